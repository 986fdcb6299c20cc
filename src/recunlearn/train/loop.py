"""The one training loop: Adam, mini-batches, early stopping on validation AUC, seeded and deterministic.

Every method that trains a model (retraining, each shard of SISA/RecEraser, fine-tuning) goes
through :func:`fit_model`, so 'trained from scratch with the same seed' means the same thing
everywhere and exactness tests can compare bitwise.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from recunlearn.data.interactions import Interactions
from recunlearn.errors import DataError
from recunlearn.models.base import CFModel
from recunlearn.models.config import LightGCNConfig, MFConfig, build_model
from recunlearn.seeds import Seed
from recunlearn.train.auc import roc_auc
from recunlearn.train.losses import bpr, l2_penalty, pointwise_bce
from recunlearn.train.runtime import configure_threads, resolve_device, show_progress


class TrainConfig(BaseModel):
    """How a collaborative-filtering model is trained."""

    model_config = ConfigDict(extra="forbid")
    loss: Literal["bce", "bpr"] = "bce"
    """'bce': pointwise cross-entropy on labels (IFRU protocol); 'bpr': pairwise on positives with
    one negative item per positive, uniform over the items the user has no training positive with."""
    lr: float = Field(1e-3, gt=0)
    """Adam learning rate."""
    l2: float = Field(1e-2, ge=0)
    """L2 penalty on the embedding rows of each batch; also keeps the Hessian of the objective
    positive definite for influence methods."""
    batch_size: int = Field(2048, gt=0)
    """Rows per Adam step (IFRU: 2048)."""
    max_epochs: int = Field(200, gt=0)
    """Upper bound on epochs."""
    patience: int | None = Field(None, ge=1)
    """Stop after this many epochs without a validation-AUC gain; None = the model's default
    (MF 10 as IFRU; LightGCN 20, whose validation AUC plateaus for 10-15 epochs before rising again)."""
    seed: Seed = 0
    """Seeds initialisation and batch order; same seed and data give the same model bitwise on CPU."""
    device: str | None = None
    """'cpu', 'cuda', ...; default: $RECUNLEARN_DEVICE, else CUDA when present, else CPU."""


@dataclass
class FitResult:
    """A trained model and how training went."""

    model: CFModel
    epochs: int = 0
    best_epoch: int = 0
    best_valid_auc: float = float("nan")
    seconds: float = 0.0
    history: list[float] = field(default_factory=list)


def _tensor(array: np.ndarray, device: torch.device, dtype=torch.long) -> torch.Tensor:
    return torch.tensor(np.asarray(array), dtype=dtype, device=device)


NEGATIVE_REDRAWS = 100
"""BPR: how many times a sampled negative that is one of the user's positives is drawn again (a user
who liked almost every item keeps a positive 'negative' only if every draw hits one)."""


def sample_negatives(n_items: int, users: torch.Tensor, generator: torch.Generator | None,
                     positives: torch.Tensor | None = None) -> torch.Tensor:
    """One item per row, uniform; with ``positives`` (sorted user x n_items + item keys of the training
    positives), one the user liked is drawn again, up to :data:`NEGATIVE_REDRAWS` times, as LightGCN's
    code samples negatives. Drawn on the CPU, where the generator lives (a CUDA draw refuses a CPU
    generator), then moved."""
    negatives = torch.randint(0, n_items, users.shape, generator=generator)
    if positives is not None and len(positives):
        owners = users.cpu()
        for _ in range(NEGATIVE_REDRAWS):
            keys = owners * n_items + negatives
            found = positives[torch.searchsorted(positives, keys).clamp_(max=len(positives) - 1)] == keys
            if not found.any():
                break
            negatives[found] = torch.randint(0, n_items, (int(found.sum()),), generator=generator)
    return negatives.to(users.device)


def batch_loss(model: CFModel, users: torch.Tensor, items: torch.Tensor, labels: torch.Tensor,
               config: TrainConfig, generator: torch.Generator | None = None,
               positives: torch.Tensor | None = None) -> torch.Tensor:
    """The training objective on one batch (mean loss plus L2 on the rows it touches: for BPR the
    sampled negatives' too, as LightGCN's code; ``positives``: see :func:`sample_negatives`).

    Rows are gathered with ``index_select``: its backward adds a repeated row's gradients in a
    fixed order, where advanced indexing's does not on several CPU threads (same seed, other model)."""
    u_rep, i_rep = model.representations()
    u = u_rep.index_select(0, users)
    if config.loss == "bce":
        loss = pointwise_bce((u * i_rep.index_select(0, items)).sum(-1), labels)
        touched = (items,)
    else:
        neg = sample_negatives(model.n_items, users, generator, positives)
        loss = bpr((u * i_rep.index_select(0, items)).sum(-1), (u * i_rep.index_select(0, neg)).sum(-1))
        touched = (items, neg)
    if config.l2:
        loss = loss + config.l2 * l2_penalty(model.user_emb.weight.index_select(0, users),
                                             *(model.item_emb.weight.index_select(0, i) for i in touched))
    return loss


@torch.no_grad()
def predict(model: CFModel, users: np.ndarray, items: np.ndarray, batch: int = 65536) -> np.ndarray:
    """Probabilities (sigmoid of logits) of the given index pairs."""
    model.eval()
    device = model.user_emb.weight.device
    u_rep, i_rep = model.representations()
    out = []
    for start in range(0, len(users), batch):
        u = _tensor(users[start:start + batch], device)
        i = _tensor(items[start:start + batch], device)
        out.append(torch.sigmoid((u_rep.index_select(0, u) * i_rep.index_select(0, i)).sum(-1)).cpu())
    return torch.cat(out).numpy() if out else np.zeros(0, np.float32)


def valid_auc(model: CFModel, valid: Interactions) -> float:
    if len(valid) == 0:
        return float("nan")
    return roc_auc(valid.label, predict(model, valid.user, valid.item))


def fit_model(model_config: MFConfig | LightGCNConfig, train: Interactions, valid: Interactions | None,
              config: TrainConfig, *, desc: str = "train") -> FitResult:
    """Train a fresh model on ``train``; early-stop on ``valid`` AUC (or run ``max_epochs`` without it)."""
    configure_threads()
    device = resolve_device(config.device)
    model = build_model(model_config, train, config.seed).to(device)
    return continue_training(model, train, valid, config, desc=desc)


def continue_training(model: CFModel, train: Interactions, valid: Interactions | None, config: TrainConfig,
                      *, desc: str = "train") -> FitResult:
    """Train ``model`` further (fine-tuning uses this with a few epochs)."""
    if valid is not None and len(np.unique(valid.label)) < 2:  # its AUC is undefined: no epoch would ever be best
        raise DataError(f"validation data with {'no rows' if not len(valid) else 'one label class only'} cannot "
                        "early-stop on AUC, which needs liked and disliked rows; pass no validation data to "
                        "train max_epochs epochs")
    start = time.perf_counter()
    device = model.user_emb.weight.device
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    users, items = _tensor(train.user, device), _tensor(train.item, device)
    labels = _tensor(train.label, device, torch.float32)
    positives = None
    if config.loss == "bpr":
        keep = labels > 0
        users, items, labels = users[keep], items[keep], labels[keep]
        positives = torch.unique(users.cpu() * model.n_items + items.cpu())  # sorted: what negatives avoid
    patience = config.patience if config.patience is not None else model.default_patience
    result = FitResult(model=model)
    best_state, best_auc, since_best = None, -np.inf, 0
    bar = tqdm(range(config.max_epochs), desc=desc, disable=not show_progress(), leave=False)
    for epoch in bar:
        model.train()
        order = torch.randperm(len(users), generator=generator).to(device)
        for start_row in range(0, len(order), config.batch_size):
            idx = order[start_row:start_row + config.batch_size]
            loss = batch_loss(model, users[idx], items[idx], labels[idx], config, generator, positives)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        result.epochs = epoch + 1
        if valid is None:
            continue
        auc = valid_auc(model, valid)
        result.history.append(auc)
        bar.set_postfix(valid_auc=f"{auc:.4f}")
        if auc > best_auc:
            best_auc, since_best, result.best_epoch = auc, 0, epoch + 1
            best_state = copy.deepcopy(model.state_dict())
        else:
            since_best += 1
            if since_best >= patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
        result.best_valid_auc = float(best_auc)
    else:
        result.best_epoch = result.epochs
    model.eval()
    result.seconds = time.perf_counter() - start
    return result
