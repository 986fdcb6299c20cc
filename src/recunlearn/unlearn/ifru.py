"""IFRU (Zhang et al., ACM TORS; arXiv 2307.02147): influence-function recommendation unlearning.

One Newton step on the embedding rows that matter: the gradient of the removed interactions plus,
for LightGCN, the *spillover* (the remaining interactions of nodes whose normalised edges change
when the deleted edges leave the graph), against the Hessian of the remaining data through graph
propagation; *importance-based pruning* keeps only the rows most affected by the removal. See
``docs/ifru.md`` for the derivation and the measured results.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from recunlearn.data.interactions import Interactions
from recunlearn.unlearn.base import register
from recunlearn.unlearn.influence.unlearner import InfluenceConfig, InfluenceUnlearner


class IFRUConfig(InfluenceConfig):
    """IFRU: influence with spillover and importance pruning."""

    hops: int = Field(1, ge=0)
    """Hops of importance propagation from the removed data's users and items (0: keep only them)."""
    keep_quantile: float = Field(0.4, ge=0.0, lt=1.0)
    """Nodes reached by propagation are kept when their score is above this quantile of the positive
    scores (0.4 keeps the top 60%, as the reference LightGCN script does); seeds are always kept."""
    min_importance: float = Field(3e-3, ge=0.0)
    """Reached nodes are also kept only when their importance is at least this (about: this fraction
    of their neighbourhood's data is removed). An absolute floor, unlike the quantile: as sum over
    nodes of degree x propagated score is at most twice the removed rows, it bounds the reached nodes
    kept by 2 x removed rows / (min_importance x smallest degree), whatever the dataset's size.
    On a small dataset the floor keeps the nodes the quantile alone keeps; on a large log it keeps far
    fewer at the same test AUC and distance to retraining (docs/ifru.md,
    `benchmarks/results/ifru/pruning_floor.py`); 0 turns it off."""
    spillover_threshold: float = Field(0.0, ge=0.0, lt=1.0)
    """A node's edges count as changed when its degree falls by more than this fraction (the
    reference code uses 0.01; 0 counts every change, which is exact)."""


def importance_scores(removed: Interactions, data: Interactions, hops: int) -> np.ndarray:
    """IFRU's importance of every node (users, then items): seeds get (count in removed) / degree,
    then ``hops`` times score(v) += sum over neighbours u of score(u) / degree(v)."""
    n_users = data.n_users
    degree = np.concatenate(
        [np.bincount(data.user, minlength=n_users), np.bincount(data.item, minlength=data.n_items)]
    ).astype(np.float64)
    score = np.concatenate(
        [
            np.bincount(removed.user, minlength=n_users),
            np.bincount(removed.item, minlength=data.n_items),
        ]
    ).astype(np.float64)
    score = np.divide(score, degree, out=np.zeros_like(score), where=degree > 0)
    for _ in range(hops):
        active = (score[data.user] > 0) | (score[n_users + data.item] > 0)
        u, i = data.user[active], data.item[active]
        spread = np.concatenate(
            [
                np.bincount(u, weights=score[n_users + i], minlength=n_users),
                np.bincount(i, weights=score[u], minlength=data.n_items),
            ]
        )
        score = score + np.divide(spread, degree, out=np.zeros_like(spread), where=degree > 0)
    return score


@register("ifru")
class IFRU(InfluenceUnlearner):
    """Influence-function unlearning with spillover (LightGCN) and importance-based pruning."""

    Config = IFRUConfig
    spillover = True

    def kept_rows(
        self, removed: Interactions, before: Interactions, graph_full: sp.csr_matrix | None
    ):
        n_users = before.n_users
        score = importance_scores(removed, before, self.config.hops)
        seeds = np.zeros(len(score), bool)
        seeds[removed.user] = True
        seeds[n_users + removed.item] = True
        reached = score > 0
        threshold = np.quantile(score[reached], self.config.keep_quantile) if reached.any() else 0.0
        keep = seeds | (reached & (score > threshold) & (score >= self.config.min_importance))
        nodes = np.flatnonzero(keep)
        return (
            nodes[nodes < n_users],
            nodes[nodes >= n_users] - n_users,
            {"seeds": int(seeds.sum()), "reached": int(reached.sum())},
        )

    def spillover_threshold(self) -> float:
        return self.config.spillover_threshold
