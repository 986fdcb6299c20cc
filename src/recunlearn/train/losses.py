"""Training objectives, shared by the training loop and by influence-based unlearning.

Influence methods differentiate exactly the objective the model was trained with, so it lives here
as plain functions of logits rather than inside the loop.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pointwise_bce(
    logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """Binary cross-entropy on (user, item, label) rows: IFRU's objective."""
    return F.binary_cross_entropy_with_logits(logits, labels, reduction=reduction)


def bpr(
    pos_logits: torch.Tensor, neg_logits: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """Bayesian personalised ranking: -log sigmoid(pos - neg)."""
    loss = -F.logsigmoid(pos_logits - neg_logits)
    return loss.mean() if reduction == "mean" else loss.sum() if reduction == "sum" else loss


def l2_penalty(*tensors: torch.Tensor) -> torch.Tensor:
    """Half the squared norm of the embedding rows a batch touches, per row (scaled like the loss)."""
    return sum(t.pow(2).sum() for t in tensors) / 2 / max(len(tensors[0]), 1)
