"""The plain mean of the shard models (SISA, GraphEraser; the quarantine fallback)."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from recunlearn.unlearn.aggregate.base import (
    Aggregator,
    _shard_logits,
    _sigmoid,
    shard_probabilities,
    shard_probabilities_all,
)


class AverageConfig(BaseModel):
    """The mean of the shard models' probabilities, or of their logits."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["average"] = "average"
    over: Literal["probabilities", "logits"] | None = None
    """'probabilities' (SISA's mean of predictions), or 'logits' (the sigmoid of the mean logit:
    a BPR model's logits only rank, and their probabilities saturate near 1, where a mean ties
    items that the shards told apart); None: 'logits' for shards trained with BPR, else
    'probabilities' (a sharded method's config fills it in)."""


class AverageAggregator(Aggregator):
    depends_on_shards = False
    uses_validation = False

    def __init__(self, config: AverageConfig):
        self.config = config

    def fit(self, models, train, valid, changed, assignment=None):
        return None

    def score(self, models, users, items):
        if self.config.over == "logits":
            return _sigmoid(np.nanmean(_shard_logits(models, users, items), axis=0))
        return np.nanmean(shard_probabilities(models, users, items), axis=0)

    def score_all(self, models, users, n_items):
        if self.config.over == "logits":
            return _sigmoid(np.nanmean(_shard_logits(models, users, None, n_items), axis=0))
        return np.nanmean(shard_probabilities_all(models, users, n_items), axis=0)
