"""NegGrad baseline: gradient ascent on the removed data's training objective."""

from __future__ import annotations

import torch
from pydantic import Field

from recunlearn.train.loop import batch_loss
from recunlearn.unlearn._approximate import ApproximateUnlearner
from recunlearn.unlearn._cf import CFMethodConfig
from recunlearn.unlearn.base import register


class NegGradConfig(CFMethodConfig):
    """How far the model climbs the removed data's loss."""

    steps: int = Field(10, ge=1)
    """Adam steps of ascent, each on all removed rows."""
    lr: float = Field(1e-3, gt=0)
    """Adam learning rate of the ascent."""


@register("neggrad")
class NegGrad(ApproximateUnlearner):
    """Maximise the loss of the removed rows (scored with the graph they were trained in) for a few steps."""

    Config = NegGradConfig

    def _update(self, removed, remaining, graph_full, graph_after, orphaned):
        model = self.model
        device = model.user_emb.weight.device
        if self.config.train.loss == "bpr":  # BPR trained on the positive rows only: climb theirs
            removed = removed.take(removed.label > 0)
            if not len(removed):
                return {"steps": 0, "update": "none (BPR trained on none of the removed rows)"}
        users = torch.tensor(removed.user, device=device)
        items = torch.tensor(removed.item, device=device)
        labels = torch.tensor(removed.label, device=device)
        generator = torch.Generator().manual_seed(
            self.config.train.seed
        )  # BPR's negatives: the same every run
        optimizer = torch.optim.Adam(model.parameters(), lr=self.config.lr)
        model.train()
        for _ in range(self.config.steps):
            loss = -batch_loss(model, users, items, labels, self.config.train, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        return {"steps": self.config.steps, "final_removed_loss": -loss.item()}
