"""What a sharded model serves while every shard is quarantined: the most popular items."""

from __future__ import annotations

import numpy as np

from recunlearn.unlearn.aggregate.base import Aggregator


class PopularityFallback(Aggregator):
    """Every user gets the items with the most positive rows left in the training data. It reads no
    shard model, so it is a function of the remaining rows only: serving it keeps a quarantine exact
    when no shard is left to combine, until the repair brings the shards back. Not a configurable
    aggregator: the quarantine installs it and the repair replaces it."""

    depends_on_shards = False
    uses_validation = False

    def __init__(self) -> None:
        self.probabilities = np.zeros(0)

    def fit(self, models, train, valid, changed, assignment=None):
        counts = np.bincount(train.item[train.label > 0], minlength=train.n_items)
        # in (0, 1) and in the order of the counts, so rankings and probability metrics both read it
        self.probabilities = (counts + 1.0) / (counts.max(initial=0) + 2.0)
        return None

    def score(self, models, users, items):
        return self.probabilities[np.asarray(items, np.int64)]

    def score_all(self, models, users, n_items):
        return np.repeat(self.probabilities[None, :n_items], len(users), axis=0)
