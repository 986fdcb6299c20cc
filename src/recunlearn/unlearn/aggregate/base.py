"""What every aggregator shares: the interface and the shard models' predictions."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from recunlearn.data.interactions import Interactions
from recunlearn.models.base import CFModel
from recunlearn.train.loop import predict


def shard_probabilities(
    models: Sequence[CFModel | None], users: np.ndarray, items: np.ndarray
) -> np.ndarray:
    """K x n probabilities of the pairs under each shard model; NaN rows for empty shards."""
    out = np.full((len(models), len(users)), np.nan, np.float32)
    for k, model in enumerate(models):
        if model is not None:
            out[k] = predict(model, users, items)
    return out


@torch.no_grad()
def shard_probabilities_all(
    models: Sequence[CFModel | None], users: np.ndarray, n_items: int
) -> np.ndarray:
    """K x n_users x n_items probabilities of the users against every item; NaN for empty shards."""
    out = np.full((len(models), len(users), n_items), np.nan, np.float32)
    for k, model in enumerate(models):
        if model is not None:
            device = model.user_emb.weight.device
            out[k] = (
                torch.sigmoid(model.score_all(torch.as_tensor(users, device=device))).cpu().numpy()
            )
    return out


@torch.no_grad()
def _shard_logits(
    models: Sequence[CFModel | None], users: np.ndarray, items: np.ndarray | None, n_items: int = 0
) -> np.ndarray:
    """K x n logits of the pairs (``items`` None: K x users x n_items, against every item), in float64;
    NaN for empty shards."""
    shape = (len(models), len(users)) if items is not None else (len(models), len(users), n_items)
    out = np.full(shape, np.nan)
    for k, model in enumerate(models):
        if model is not None:
            device = model.user_emb.weight.device
            # copies: the index arrays may be read-only views (torch warns on those)
            u = torch.tensor(users, dtype=torch.int64, device=device)
            logits = (
                model.score_all(u)
                if items is None
                else model(u, torch.tensor(items, dtype=torch.int64, device=device))
            )
            out[k] = logits.double().cpu().numpy()
    return out


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


class Aggregator(ABC):
    """Combines the K shard models' predictions; refitted after shards change when it depends on them."""

    depends_on_shards: bool = True
    """Whether :meth:`fit` must run again after a shard is retrained."""
    uses_validation: bool = True
    """Whether :meth:`fit` reads the validation data (it must run again, for every shard, when
    validation rows are deleted)."""

    @abstractmethod
    def fit(
        self,
        models: Sequence[CFModel | None],
        train: Interactions,
        valid: Interactions | None,
        changed: Sequence[int],
        assignment: np.ndarray | None = None,
    ) -> dict[str, Any] | None:
        """(Re)fit after the ``changed`` shards were (re)trained; ``assignment`` is the shard of each
        ``train`` row. Returns JSON-able info, None if nothing fitted."""

    @abstractmethod
    def score(
        self, models: Sequence[CFModel | None], users: np.ndarray, items: np.ndarray
    ) -> np.ndarray:
        """Probabilities of (user, item) index pairs."""

    def score_all(
        self, models: Sequence[CFModel | None], users: np.ndarray, n_items: int
    ) -> np.ndarray:
        """Probabilities of the users against every item (rows: users)."""
        grid_u = np.repeat(users, n_items)
        grid_i = np.tile(np.arange(n_items), len(users))
        return self.score(models, grid_u, grid_i).reshape(len(users), n_items)

    def tensors(self) -> dict[str, torch.Tensor]:
        """Fitted state to save (safetensors)."""
        return {}

    def restore(self, tensors: dict[str, torch.Tensor], models: Sequence[CFModel | None]) -> None:
        """Rebuild the fitted state from :meth:`tensors`' output (stateless aggregators: nothing)."""
        return None
