"""Reference recommenders every ranking table shows beside the learned ones."""

from __future__ import annotations

import numpy as np

from recunlearn.data.interactions import Interactions


class MostPopular:
    """Scores every item by its number of positive training rows, the same list for every user: what a
    learned recommender must clearly beat for its ranking to mean anything."""

    def __init__(self, train: Interactions):
        positives = train.label > 0
        self.counts = np.bincount(train.item[positives], minlength=train.n_items).astype(np.float64)

    def score_index(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.counts[np.asarray(items, np.int64)]

    def score_all(self, users: np.ndarray) -> np.ndarray:
        return np.repeat(self.counts[None, :], len(users), axis=0)
