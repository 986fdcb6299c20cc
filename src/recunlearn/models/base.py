"""What every collaborative-filtering model offers the training loop and the unlearning methods."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import nn

from recunlearn.data.interactions import Interactions


class CFModel(nn.Module, ABC):
    """A scorer of (user, item) index pairs with user/item embedding tables.

    ``user_emb`` and ``item_emb`` are the trainable parameters, one row per user/item, so that
    row-restricted methods (influence functions, pruning) can address them uniformly.
    """

    user_emb: nn.Embedding
    item_emb: nn.Embedding
    default_patience: ClassVar[int] = 10
    """Early-stopping patience (epochs) when the training settings leave it unset (IFRU's 10)."""

    def __init__(
        self, n_users: int, n_items: int, dim: int, init_std: float, generator: torch.Generator
    ):
        super().__init__()
        self.n_users, self.n_items, self.dim = n_users, n_items, dim
        self.user_emb = nn.Embedding(n_users, dim)
        self.item_emb = nn.Embedding(n_items, dim)
        with torch.no_grad():
            self.user_emb.weight.normal_(0.0, init_std, generator=generator)
            self.item_emb.weight.normal_(0.0, init_std, generator=generator)

    def set_graph(self, data: Interactions) -> None:
        """Models that propagate over the interaction graph rebuild it here; MF ignores it."""

    @abstractmethod
    def representations(
        self, user_weight: torch.Tensor | None = None, item_weight: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Final user and item representations (optionally from substitute embedding tables)."""

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Logits of the given pairs."""
        u, i = self.representations()
        return (u[users] * i[items]).sum(-1)

    def logits_from(
        self,
        user_weight: torch.Tensor,
        item_weight: torch.Tensor,
        users: torch.Tensor,
        items: torch.Tensor,
    ) -> torch.Tensor:
        """Logits computed from substitute embedding tables: the functional form influence methods differentiate."""
        u, i = self.representations(user_weight, item_weight)
        return (u[users] * i[items]).sum(-1)

    @torch.no_grad()
    def score_all(self, users: torch.Tensor) -> torch.Tensor:
        """Logits of the given users against every item."""
        u, i = self.representations()
        return u[users] @ i.T
