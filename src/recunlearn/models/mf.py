"""Matrix factorisation: logit(u, i) = <p_u, q_i>."""

from __future__ import annotations

import torch

from recunlearn.models.base import CFModel


class MF(CFModel):
    def representations(self, user_weight=None, item_weight=None):
        return (
            self.user_emb.weight if user_weight is None else user_weight,
            self.item_emb.weight if item_weight is None else item_weight,
        )

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return (self.user_emb(users) * self.item_emb(items)).sum(-1)
