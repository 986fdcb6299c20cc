"""Each user ranked by the shards that hold the user's rows."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict

from recunlearn.data.interactions import Interactions
from recunlearn.unlearn.aggregate.base import Aggregator, _shard_logits, _sigmoid


class OwnerConfig(BaseModel):
    """Each user scored by the shard models that hold the user's training rows."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["owner"] = "owner"


class OwnerAggregator(Aggregator):
    """Per-user mean of the shard logits, weighted by the share of the user's training rows each shard
    holds (users without training rows: every non-empty shard alike). A function of the shard models
    and where the remaining rows are, so recounting it after a deletion is exact."""

    uses_validation = False

    def __init__(self, config: OwnerConfig):
        self.config = config
        self.weights: np.ndarray | None = None  # n_users x K, rows sum to 1

    def fit(self, models, train, valid, changed, assignment=None):
        counts = _rows_per_shard(len(models), train, assignment)
        self.weights = _owner_weights(models, counts)
        return {"users_with_rows": int((counts.sum(1) > 0).sum())}

    def _combine(self, models, users: np.ndarray, logits_of) -> np.ndarray:
        weights = self.weights[users]
        out: np.ndarray | None = None
        for k, model in enumerate(models):
            rows = np.flatnonzero(weights[:, k] > 0)
            if model is None or not len(rows):
                continue
            part = weights[rows, k, None] * logits_of(model, rows)
            if out is None:
                out = np.zeros((len(users), *part.shape[1:]))
            out[rows] += part
        return _sigmoid(out)

    def score(self, models, users, items):
        return self._combine(
            models, users, lambda m, rows: _shard_logits([m], users[rows], items[rows])[0][:, None]
        )[:, 0]

    def score_all(self, models, users, n_items):
        return self._combine(
            models, users, lambda m, rows: _shard_logits([m], users[rows], None, n_items)[0]
        )

    def tensors(self):
        return {"weights": torch.from_numpy(self.weights.copy())}

    def restore(self, tensors, models):
        self.weights = tensors["weights"].numpy().copy()


def _rows_per_shard(n_shards: int, train: Interactions, assignment) -> np.ndarray:
    """n_users x K: how many of each user's training rows each shard holds."""
    if assignment is None or len(assignment) != len(train):
        raise ValueError("this aggregator needs the shard of every training row")
    return np.bincount(
        train.user * n_shards + assignment, minlength=train.n_users * n_shards
    ).reshape(train.n_users, n_shards)


def _owner_weights(models, counts: np.ndarray) -> np.ndarray:
    """n_users x K: the share of each user's training rows each shard holds (users without rows:
    every non-empty shard alike)."""
    present = np.array([m is not None for m in models], dtype=np.float64)
    total = counts.sum(1, keepdims=True)
    return np.where(total > 0, counts / np.maximum(total, 1), present / max(present.sum(), 1))
