"""Random samples that make a sub-sampled Hessian's cost follow the nodes it updates: training
rows drawn per node, and LightGCN neighbours drawn per kept node, each with the Horvitz-Thompson
weights that keep sums over the sample unbiased.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from recunlearn.data.interactions import Interactions
from recunlearn.models.graph import group_order


def shuffled_ranks(groups: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Each element's rank among the elements of its group (a non-negative integer id) in a uniformly
    random order, and the groups' sizes: drawing the elements of rank < k draws k of each group
    uniformly without replacement. A random permutation, then a stable sort by group: numpy's radix
    sort where the ids fit 16 bits (linear time), else one torch sort of (group, 31 random bits) keys,
    where two given elements of a group tie with probability 2^-31 (only then is their order not random)."""
    groups = np.asarray(groups, np.int64)
    n = len(groups)
    size = np.bincount(groups)
    if len(size) <= 1 << 16:
        generator = torch.Generator().manual_seed(int(rng.integers(1 << 62)))
        shuffle = torch.randperm(n, generator=generator).numpy()
        order = shuffle[group_order(groups[shuffle], len(size))]
    else:
        keys = (groups << 31) | rng.integers(0, 1 << 31, n, dtype=np.int64)
        order = torch.sort(torch.from_numpy(keys)).indices.numpy()
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n) - np.repeat(
        np.cumsum(size) - size, size
    )  # sorted, the groups are repeat(ids, size)
    return rank, size


def sample_rows_per_node(
    users: np.ndarray,
    items: np.ndarray,
    n_users: int,
    per_node: int,
    seed: int = 0,
    drawing: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A sample of training rows that holds ``per_node`` rows of every node (all of them where it has
    fewer), and the Horvitz-Thompson weights (1 / inclusion probability) that make any sum over the
    sample an unbiased estimate of the sum over all rows.

    Every user and every item draws ``per_node`` of its rows uniformly, independently; a row is in
    the sample when either of its ends drew it, with probability p_u + p_i - p_u p_i, p = min(1,
    per_node / degree) (degrees within the rows given). No node is left without rows (so no Hessian
    block is estimated as zero), and the sample has at most ``per_node`` times the number of nodes
    rows, whatever the degrees: what makes a sub-sampled Newton step cost follow the nodes it
    updates rather than their degrees.

    ``drawing`` (a mask over users then items) limits the draw to those nodes, when only sums at
    them are wanted: every row must then have a drawing end (else it could never be drawn and the
    estimate would be biased), and the sample holds at most ``per_node`` x (drawing nodes) rows.
    """
    users, items = np.asarray(users, np.int64), n_users + np.asarray(items, np.int64)
    rng = np.random.default_rng(seed)
    chosen = np.zeros(len(users), bool)
    probability_not = np.ones(len(users))
    draws = np.zeros(len(users), bool)
    for ends in (users, items):
        rank, degree = shuffled_ranks(ends, rng)
        draws_here = np.ones(len(ends), bool) if drawing is None else drawing[ends]
        chosen |= (rank < per_node) & draws_here
        probability_not *= np.where(draws_here, 1.0 - np.minimum(1.0, per_node / degree[ends]), 1.0)
        draws |= draws_here
    if not draws.all():
        raise ValueError("every row needs an end among the drawing nodes")
    rows = np.flatnonzero(chosen)
    return rows, (1.0 / (1.0 - probability_not[rows])).astype(np.float32)


@dataclass
class NeighbourSample:
    """Rows of one-layer LightGCN's propagation P = (I + A) / 2 for the kept nodes, each holding the
    node itself and at most ``per_node`` of its graph neighbours (drawn uniformly, without
    replacement): ``linear`` holds P / pi and ``squared`` P^2 / pi at the drawn entries (pi = the
    entry's inclusion probability), so sum_n P_nu x_n and sum_n P_nu^2 x_n over a node's whole row
    are estimated without bias by the same sums over its drawn entries. Rows: the kept nodes in
    order; columns: every node (users, then items)."""

    linear: sp.csr_matrix
    squared: sp.csr_matrix

    @property
    def nodes(self) -> np.ndarray:
        """Every node drawn (the kept nodes among them): the nodes whose row sums the blocks need."""
        return np.unique(self.linear.indices)


def sample_neighbours(
    graph: sp.csr_matrix, nodes: np.ndarray, per_node: int, seed: int = 0
) -> NeighbourSample:
    """:class:`NeighbourSample` of ``nodes`` on the normalised adjacency ``graph``: what makes a kept
    node's Hessian block cost follow ``per_node`` rather than its degree (a popular item's block
    otherwise sums the rows of every user who rated it)."""
    nodes = np.asarray(nodes, np.int64)
    rows = graph[nodes].tocsr()
    rows.sum_duplicates()
    degree = np.diff(rows.indptr)
    owner = np.repeat(np.arange(len(nodes)), degree)
    rank, _ = shuffled_ranks(owner, np.random.default_rng(seed))
    drawn = rank < per_node
    inverse = np.maximum(1.0, degree / per_node)[owner[drawn]]  # 1 / pi
    # CSR rows built in place: each node's own entry (P_uu = 1 / 2, always drawn), then its drawn
    # neighbours (P_nu = A_nu / 2) in the graph's order
    indptr = np.concatenate([[0], np.cumsum(1 + np.bincount(owner[drawn], minlength=len(nodes)))])
    own = np.zeros(indptr[-1], bool)
    own[indptr[:-1]] = True
    column = np.empty(indptr[-1], np.int64)
    column[own], column[~own] = nodes, rows.indices[drawn]
    p, weight = np.full(indptr[-1], 0.5), np.ones(indptr[-1])
    p[~own], weight[~own] = rows.data[drawn] / 2, inverse
    shape = (len(nodes), graph.shape[1])
    return NeighbourSample(
        sp.csr_matrix((p * weight, column, indptr), shape=shape),
        sp.csr_matrix((p * p * weight, column, indptr), shape=shape),
    )


def rows_touching(data: Interactions, nodes: np.ndarray, n_users: int) -> np.ndarray:
    """Mask of the rows whose user or item is one of ``nodes`` (users first, then items)."""
    marked = np.zeros(n_users + data.n_items, bool)
    marked[nodes] = True
    return marked[data.user] | marked[n_users + data.item]


def hessian_rows(
    data: Interactions, summed: np.ndarray, n_users: int, per_node: int | None, seed: int
) -> tuple[np.ndarray, np.ndarray | float]:
    """The rows of ``data`` whose loss enters the Hessian sums at the nodes ``summed`` (users first,
    then items) and their weights: all of them (weight 1) or, with ``per_node``, the unbiased
    :func:`sample_rows_per_node` drawn by those nodes only (the sums elsewhere are never read)."""
    rows = np.flatnonzero(rows_touching(data, summed, n_users))
    if per_node is None:
        return rows, 1.0
    drawing = np.zeros(n_users + data.n_items, bool)
    drawing[summed] = True
    chosen, weights = sample_rows_per_node(
        data.user[rows], data.item[rows], n_users, per_node, seed=seed, drawing=drawing
    )
    return rows[chosen], weights
