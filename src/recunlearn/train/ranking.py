"""Top-K ranking over all items with each user's training items masked: Recall, NDCG, HitRate, MRR
and catalogue coverage at K.

Early stopping of ranking models evaluates it every epoch, influence methods' guard after an update,
and :func:`recunlearn.evaluate.ranking_report` for the tables, so the masks and relevant sets are
built once per (training, held-out) pair of tables and the ranking runs in batched tensor operations.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
import torch

from recunlearn.data.interactions import Interactions

ScoreAll = Callable[[np.ndarray], "np.ndarray | torch.Tensor"]
"""Scores of the given user indices against every item, shape (users, items); higher ranks first."""


def _pairs(
    data: Interactions, keep: np.ndarray | None, n_users: int, n_items: int
) -> sp.csr_matrix:
    users, items = (data.user, data.item) if keep is None else (data.user[keep], data.item[keep])
    matrix = sp.csr_matrix(
        (np.ones(len(users), np.bool_), (users, items)), shape=(n_users, n_items)
    )
    matrix.sum_duplicates()
    return matrix


class RankingTask:
    """Who is judged on what: ``relevant``'s positive rows are the items to find, ``seen``'s rows the
    items never recommended (a user's training items). Users without a relevant item are not judged.

    Recall@K is a user's relevant items in the top K over all their relevant items (as the LightGCN
    and RecEraser evaluation code computes it), NDCG@K's ideal DCG that of min(relevant, K) hits,
    MRR@K the reciprocal rank of the first hit in the top K (0 without one), and coverage@K the share
    of the catalogue that appears in some judged user's top K.
    """

    def __init__(
        self, seen: Interactions, relevant: Interactions, k: int = 20, batch_users: int = 1024
    ):
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        n_users, n_items = relevant.n_users, relevant.n_items
        self.k, self.batch_users, self.n_items = k, batch_users, n_items
        self.relevant = _pairs(relevant, relevant.label > 0, n_users, n_items)
        self.seen = _pairs(seen, None, n_users, n_items)
        self.users = np.flatnonzero(np.diff(self.relevant.indptr) > 0)
        self.discounts = torch.tensor(1.0 / np.log2(np.arange(2, k + 2)), dtype=torch.float64)

    _CACHED = 1 << 26
    """Masks of at most this many (user, item) cells are kept between calls (early stopping and the
    guard rank the same users again and again); larger ones are built batch by batch each time."""

    def _batches(self, k: int) -> list[tuple[torch.Tensor, ...]]:
        """Per batch of users: the training mask, the relevant mask, the relevant counts and ideal DCGs."""
        cached = getattr(self, "_cache", None)
        if cached is not None:
            return cached
        built: list[tuple[torch.Tensor, ...]] = []
        for start in range(0, len(self.users), self.batch_users):
            batch = self.users[start : start + self.batch_users]
            relevant = self.relevant[batch]
            n_relevant = torch.from_numpy(np.diff(relevant.indptr)).to(torch.float64)
            ideal = torch.cumsum(self.discounts[:k], 0)[(n_relevant.clamp(max=k) - 1).long()]
            built.append(
                (
                    torch.from_numpy(self.seen[batch].toarray()),
                    torch.from_numpy(relevant.toarray()),
                    n_relevant,
                    ideal,
                )
            )
        if len(self.users) * self.n_items <= self._CACHED:
            self._cache = built
        return built

    def names(self) -> list[str]:
        return [f"{name}@{self.k}" for name in ("recall", "ndcg", "hit", "mrr", "coverage")]

    def evaluate(self, score_all: ScoreAll) -> dict[str, float]:
        """The five measures for ``score_all``; all NaN where it scores NaN anywhere (a ranking of NaN
        scores means nothing) or no user has a relevant item."""
        nan = dict.fromkeys(self.names(), float("nan"))
        if not len(self.users):
            return nan
        k = min(self.k, self.n_items)
        recall = ndcg = hit = mrr = 0.0
        shown = torch.zeros(self.n_items, dtype=torch.bool)
        ranks = torch.arange(1, k + 1, dtype=torch.float64)
        for start, (masked, is_relevant, n_relevant, ideal) in zip(
            range(0, len(self.users), self.batch_users), self._batches(k)
        ):
            batch = self.users[start : start + self.batch_users]
            scores = torch.as_tensor(score_all(batch)).detach().cpu()
            if torch.isnan(scores).any():
                return nan
            top = torch.topk(scores.masked_fill(masked, -torch.inf), k, dim=1, sorted=True).indices
            # a masked training item is never recommended: where K reaches past the items left, no hit
            shown_items = ~masked.gather(1, top)
            hits = (is_relevant.gather(1, top) & shown_items).to(torch.float64)
            recall += float((hits.sum(1) / n_relevant).sum())
            ndcg += float(((hits * self.discounts[:k]).sum(1) / ideal).sum())
            found = hits.any(1)
            hit += float(found.sum())
            first = torch.where(hits > 0, ranks, torch.inf).min(1).values
            mrr += float(torch.where(found, 1.0 / first, 0.0).sum())
            shown[top[shown_items]] = True
        n = len(self.users)
        return dict(
            zip(
                self.names(),
                (recall / n, ndcg / n, hit / n, mrr / n, float(shown.sum()) / self.n_items),
            )
        )
