"""Utility metrics: ROC-AUC (overall and on the OR / AND subsets around deleted data) and full-ranking
Recall / NDCG / HitRate / MRR / coverage@K with training items masked."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from recunlearn.data.interactions import Interactions
from recunlearn.train.auc import roc_auc
from recunlearn.train.ranking import RankingTask


class Scorer(Protocol):
    def score_index(self, users: np.ndarray, items: np.ndarray) -> np.ndarray: ...
    def score_all(self, users: np.ndarray) -> np.ndarray: ...


def subset_masks(test: Interactions, deleted: Interactions) -> dict[str, np.ndarray]:
    """IFRU's subsets: test pairs whose user OR item, and user AND item, occur in the deleted data."""
    in_u = np.isin(test.user, deleted.user)
    in_i = np.isin(test.item, deleted.item)
    return {"all": np.ones(len(test), bool), "or": in_u | in_i, "and": in_u & in_i}


def auc_report(
    model: Scorer, test: Interactions, deleted: Interactions | None = None
) -> dict[str, float]:
    """AUC on ``test``, and on its OR / AND subsets when ``deleted`` is given."""
    scores = model.score_index(test.user, test.item)
    if deleted is None:
        return {"auc": roc_auc(test.label, scores)}
    return {
        f"auc_{name}" if name != "all" else "auc": roc_auc(test.label[m], scores[m])
        for name, m in subset_masks(test, deleted).items()
    }


def ranking_report(
    model: Scorer, train: Interactions, test: Interactions, k: int = 20, batch_users: int = 1024
) -> dict[str, float]:
    """Recall, NDCG, HitRate, MRR and coverage at ``k`` over all items, items seen in training masked
    (see :class:`~recunlearn.train.ranking.RankingTask`). Only positive-label test rows are relevant;
    users without one are skipped. A model that scores NaN anywhere gets NaN, not a ranking."""
    return RankingTask(train, test, k, batch_users).evaluate(model.score_all)
