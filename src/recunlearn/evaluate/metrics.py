"""Utility metrics: ROC-AUC (overall and on the OR / AND subsets around deleted data) and full-ranking
Recall / NDCG / HitRate@K with training items masked."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from recunlearn.data.interactions import Interactions
from recunlearn.train.auc import roc_auc


class Scorer(Protocol):
    def score_index(self, users: np.ndarray, items: np.ndarray) -> np.ndarray: ...
    def score_all(self, users: np.ndarray) -> np.ndarray: ...


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC-AUC; NaN when only one class is present (undefined rather than misleading)."""
    return roc_auc(labels, scores)


def subset_masks(test: Interactions, deleted: Interactions) -> dict[str, np.ndarray]:
    """IFRU's subsets: test pairs whose user OR item, and user AND item, occur in the deleted data."""
    in_u = np.isin(test.user, deleted.user)
    in_i = np.isin(test.item, deleted.item)
    return {"all": np.ones(len(test), bool), "or": in_u | in_i, "and": in_u & in_i}


def auc_report(model: Scorer, test: Interactions, deleted: Interactions | None = None) -> dict[str, float]:
    """AUC on ``test``, and on its OR / AND subsets when ``deleted`` is given."""
    scores = model.score_index(test.user, test.item)
    if deleted is None:
        return {"auc": auc(test.label, scores)}
    return {f"auc_{name}" if name != "all" else "auc": auc(test.label[m], scores[m])
            for name, m in subset_masks(test, deleted).items()}


def ranking_report(model: Scorer, train: Interactions, test: Interactions, k: int = 20,
                   batch_users: int = 256) -> dict[str, float]:
    """Recall@k, NDCG@k and HitRate@k over all items, items seen in training masked.

    Only positive-label test rows are relevant; users without one are skipped. Recall@k is a user's
    relevant items in the top k over all their relevant items (as the LightGCN and RecEraser
    evaluation code computes it; it cannot reach 1 for a user with more than k), NDCG@k's ideal DCG
    is that of min(relevant, k) hits. A model that scores NaN anywhere gets NaN, not a ranking.
    """
    pos = test.label > 0
    users = np.unique(test.user[pos])
    if len(users) == 0:
        return {f"recall@{k}": float("nan"), f"ndcg@{k}": float("nan"), f"hit@{k}": float("nan")}
    relevant = {u: set() for u in users.tolist()}
    for u, i in zip(test.user[pos].tolist(), test.item[pos].tolist()):
        relevant[u].add(i)
    seen_u, seen_i = train.user, train.item
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    recall, ndcg, hit = [], [], []
    for start in range(0, len(users), batch_users):
        batch = users[start:start + batch_users]
        scores = np.asarray(model.score_all(batch), dtype=np.float64)
        if np.isnan(scores).any():  # argpartition would rank NaN last, below the masked training items
            return {f"recall@{k}": float("nan"), f"ndcg@{k}": float("nan"), f"hit@{k}": float("nan")}
        row_of = {u: r for r, u in enumerate(batch.tolist())}
        in_batch = np.isin(seen_u, batch)
        masked = np.zeros(scores.shape, bool)
        masked[[row_of[u] for u in seen_u[in_batch].tolist()], seen_i[in_batch]] = True
        scores[masked] = -np.inf
        top = np.argpartition(-scores, kth=min(k, scores.shape[1] - 1), axis=1)[:, :k]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), axis=1, kind="stable"), 1)
        for row, u in enumerate(batch.tolist()):
            rel = relevant[u]
            # a masked training item is never recommended: where k reaches past the items left, it is no hit
            hits = np.array([i in rel for i in top[row].tolist()], dtype=np.float64) * ~masked[row, top[row]]
            ideal = discounts[: min(len(rel), k)].sum()
            recall.append(hits.sum() / len(rel))
            ndcg.append((hits * discounts[: len(hits)]).sum() / ideal)
            hit.append(float(hits.any()))
    return {f"recall@{k}": float(np.mean(recall)), f"ndcg@{k}": float(np.mean(ndcg)), f"hit@{k}": float(np.mean(hit))}
