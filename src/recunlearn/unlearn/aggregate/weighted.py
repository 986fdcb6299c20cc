"""Per-user weights from each shard's error on the user's validation rows (APA's weighting)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from recunlearn.models.base import CFModel
from recunlearn.train.loop import predict
from recunlearn.unlearn.aggregate.base import (
    Aggregator,
    shard_probabilities,
    shard_probabilities_all,
)


class WeightedConfig(BaseModel):
    """A weighted mean of shard probabilities whose weights depend on the user."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["weighted"] = "weighted"
    tau: float = Field(10.0, ge=0)
    """Temperature: weight_k = softmax(-tau * error_k); 0 gives the plain average."""
    error: Literal["bce", "abs"] = "bce"
    """Error of a shard on a validation row: cross-entropy, or |probability - label|."""


class WeightedAggregator(Aggregator):
    """Per-user weights from each shard's error on that user's validation rows (uniform without any)."""

    def __init__(self, config: WeightedConfig):
        self.config = config
        self.errors: np.ndarray | None = (
            None  # n_users x K mean validation error; NaN = no rows / empty shard
        )

    def fit(self, models, train, valid, changed, assignment=None):
        n_shards = len(models)
        if self.errors is None or self.errors.shape != (train.n_users, n_shards):
            self.errors = np.full((train.n_users, n_shards), np.nan)
            changed = range(n_shards)
        if valid is None or len(valid) == 0:
            return {"changed": sorted(changed), "users_with_weights": 0}
        counts = np.bincount(valid.user, minlength=train.n_users).astype(np.float64)
        for k in changed:
            if models[k] is None:
                self.errors[:, k] = np.nan
                continue
            p = predict(models[k], valid.user, valid.item).astype(np.float64)
            if self.config.error == "bce":
                p = np.clip(p, 1e-7, 1 - 1e-7)
                row_error = -(valid.label * np.log(p) + (1 - valid.label) * np.log(1 - p))
            else:
                row_error = np.abs(p - valid.label)
            with np.errstate(invalid="ignore", divide="ignore"):
                self.errors[:, k] = (
                    np.bincount(valid.user, weights=row_error, minlength=train.n_users) / counts
                )
        return {
            "changed": sorted(int(k) for k in changed),
            "users_with_weights": int((counts > 0).sum()),
        }

    def weights(self, users: np.ndarray, models: Sequence[CFModel | None]) -> np.ndarray:
        """len(users) x K weights summing to 1 over the non-empty shards."""
        present = np.array([m is not None for m in models])
        errors = self.errors[users]
        logits = np.where(np.isnan(errors), 0.0, -self.config.tau * errors)
        known = ~np.isnan(errors).all(axis=1)  # users with validation rows in some non-empty shard
        logits[~known] = 0.0
        logits[:, ~present] = -np.inf
        logits -= logits.max(axis=1, keepdims=True)
        w = np.exp(logits)
        return w / w.sum(axis=1, keepdims=True)

    def score(self, models, users, items):
        per_shard = np.nan_to_num(shard_probabilities(models, users, items))
        return (self.weights(users, models).T * per_shard).sum(0)

    def score_all(self, models, users, n_items):
        per_shard = np.nan_to_num(shard_probabilities_all(models, users, n_items))
        return np.einsum("uk,kui->ui", self.weights(users, models), per_shard)

    def tensors(self):
        return {"errors": torch.from_numpy(self.errors.copy())}

    def restore(self, tensors, models):
        self.errors = tensors["errors"].numpy().copy()
