"""Influence-function machinery: the training objective as a function of chosen embedding rows, its
gradient and Hessian-vector products by double backprop, and solvers of (H + damping I) x = b.

Influence methods never touch the whole parameter vector: they pick the rows they update
(:class:`KeptRows`), build :class:`RestrictedObjective` over the training rows whose scores depend
on them (for LightGCN only the nodes within ``n_layers`` hops are propagated), and solve for the
update with :func:`block_newton` (the per-row Newton step on the exact diagonal Hessian blocks of
:func:`hessian_blocks`, the default) or :func:`solve` (conjugate gradients; LiSSA, the reference
code's quadratic minimisation by Adam, and a dense exact solve for tiny problems to test the others against).
"""

from __future__ import annotations

import bisect
import copy
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from recunlearn.errors import RecUnlearnError
from recunlearn.models.base import CFModel

Operator = Callable[[torch.Tensor], torch.Tensor]

WHOLE_GRAPH_SHARE = 0.5
"""A :class:`RestrictedObjective` whose rows reach more than this share of the nodes propagates the
whole graph: exact either way, and cheaper than cutting the graph down to the closure."""


class SolverError(RecUnlearnError):
    """An inverse-Hessian solver diverged or met a direction of non-positive curvature."""

    def __init__(self, message: str, shift: float = 0.0):
        super().__init__(message)
        self.shift = shift
        """For non-positive curvature: how far the damped Hessian's Rayleigh quotient fell below zero."""


# the objective restricted to some rows -------------------------------------------------------------
@dataclass(frozen=True)
class KeptRows:
    """The embedding rows an influence update may change: user indices, then item indices."""

    users: np.ndarray
    items: np.ndarray

    @property
    def size(self) -> int:
        return len(self.users) + len(self.items)

    def nodes(self, n_users: int) -> np.ndarray:
        """Graph node ids (users first, then ``n_users + item``) in the order of the parameter rows."""
        return np.concatenate([self.users, n_users + self.items]).astype(np.int64)

    def gather(self, model: CFModel) -> torch.Tensor:
        """The current values of the kept rows, shape (size, dim)."""
        device = model.user_emb.weight.device
        return torch.cat(
            [
                model.user_emb.weight.detach()[torch.as_tensor(self.users, device=device)],
                model.item_emb.weight.detach()[torch.as_tensor(self.items, device=device)],
            ]
        )

    @torch.no_grad()
    def scatter(self, model: CFModel, values: torch.Tensor) -> None:
        """Write ``values`` (shape (size, dim)) into the model's kept rows."""
        device = model.user_emb.weight.device
        model.user_emb.weight[torch.as_tensor(self.users, device=device)] = values[
            : len(self.users)
        ]
        model.item_emb.weight[torch.as_tensor(self.items, device=device)] = values[
            len(self.users) :
        ]


def adjacency_to_scipy(adjacency: torch.Tensor) -> sp.csr_matrix:
    """A torch CSR adjacency as a scipy CSR matrix (sharing memory on CPU)."""
    n = adjacency.shape[0]
    return sp.csr_matrix(
        (
            adjacency.values().cpu().numpy(),
            adjacency.col_indices().cpu().numpy(),
            adjacency.crow_indices().cpu().numpy(),
        ),
        shape=(n, n),
    )


def scipy_to_adjacency(matrix: sp.csr_matrix, device: torch.device | str = "cpu") -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(
            torch.from_numpy(matrix.indptr.astype(np.int64)),
            torch.from_numpy(matrix.indices.astype(np.int64)),
            torch.from_numpy(matrix.data.astype(np.float32)),
            matrix.shape,
        ).to(device)


def find_entries(
    graph: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Where each (rows[k], cols[k]) is stored in ``graph.data`` and whether it is stored at all, by
    binary search on row * n + col (``graph`` must have sorted indices)."""
    n = graph.shape[0]
    keys = np.repeat(np.arange(n, dtype=np.int64), np.diff(graph.indptr)) * n + graph.indices
    rows = np.asarray(rows, np.int64)
    wanted = rows * n + np.asarray(cols, np.int64)
    if (
        n <= 1 << 16 and len(rows) > 1024
    ):  # searched row by row (a linear radix sort): far fewer cache misses
        by_row = group_order(rows, n)
        position = np.empty(len(wanted), np.int64)
        position[by_row] = np.searchsorted(keys, wanted[by_row])
    else:
        position = np.searchsorted(keys, wanted)
    found = position < len(keys)
    found[found] &= keys[position[found]] == wanted[found]
    return position, found


def expand(
    graph: sp.csr_matrix | None, nodes: np.ndarray, hops: int, size: int | None = None
) -> np.ndarray:
    """``nodes`` and every node within ``hops`` edges of them (sorted, unique); the graph's stored
    values must be positive (a normalised adjacency's are).

    Marks nodes in tables over the graph's (or ``size``) nodes rather than hashing them: a hop is one
    sparse matrix-vector product with the frontier's indicator, linear in the edges.
    """
    size = graph.shape[0] if graph is not None else size
    if size is None:
        return np.unique(nodes)
    marked = np.zeros(size, bool)
    marked[nodes] = True
    frontier = marked.astype(np.float32)
    for _ in range(hops if graph is not None else 0):
        fresh = (graph.T @ frontier > 0) & ~marked  # an edge (frontier node, v) reaches v
        if not fresh.any():
            break
        marked |= fresh
        frontier = fresh.astype(np.float32)
    return np.flatnonzero(marked)


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


def _select_rows(matrix: sp.csr_matrix, rows: np.ndarray) -> sp.csr_matrix:
    """``matrix[rows]``, without a copy when ``rows`` are all of them in order."""
    if len(rows) == matrix.shape[0] and (rows == np.arange(len(rows))).all():
        return matrix
    return matrix[rows]


def _select_columns(matrix: sp.csr_matrix, columns: np.ndarray) -> sp.csr_matrix:
    """``matrix[:, columns]`` for distinct ``columns``, by one lookup over the stored entries (the
    entries keep their order within a row, sorted or not)."""
    lookup = np.full(matrix.shape[1], -1, np.int64)
    lookup[columns] = np.arange(len(columns))
    moved = lookup[matrix.indices]
    keep = moved >= 0
    indptr = np.concatenate([[0], np.cumsum(keep)])[matrix.indptr]
    return sp.csr_matrix(
        (matrix.data[keep], moved[keep], indptr), shape=(matrix.shape[0], len(columns))
    )


def group_order(groups: np.ndarray, n_groups: int) -> np.ndarray:
    """A stable argsort of non-negative group ids below ``n_groups``: numpy's linear radix sort where
    they fit 16 bits. What orders rows into a CSR pattern (the columns within a row stay in the
    rows' order, which no sparse product here needs sorted)."""
    return np.argsort(groups.astype(np.uint16) if n_groups <= 1 << 16 else groups, kind="stable")


def _grouped_order(groups: torch.Tensor, n_groups: int) -> torch.Tensor:
    """:func:`group_order` of a tensor (torch's sort off the CPU)."""
    if groups.device.type == "cpu":
        return torch.from_numpy(group_order(groups.numpy(), n_groups))
    return torch.argsort(groups, stable=True)


class RestrictedObjective:
    """sum_r w_r f_r(theta) over given training rows, as a function of the kept rows ``theta``.

    ``f_r`` is one row of :func:`recunlearn.train.loop.batch_loss` with the BCE loss: the
    cross-entropy of the row's logit plus ``l2 / 2`` times the squared norms of its raw user and
    item rows. Only the nodes the rows need are propagated (the ``n_layers``-hop closure of their
    users and items), so the cost follows the rows, not the dataset; rows outside the kept set
    keep their current values. ``graph`` is the normalised adjacency to score with (None: MF);
    ``adjacency``, the same graph as the tensor the model propagates with, where the caller has it
    (used when the closure is the whole graph, saving a conversion).

    With ``negatives`` (one item per row), ``f_r`` is the BPR row -log sigma(x_ui - x_uj) plus
    ``l2 / 2`` times the squared norms of its user, item and negative rows, and ``labels`` are not
    read: the pairwise objective, whose gradient and Hessian-vector products come from autograd.
    """

    def __init__(
        self,
        model: CFModel,
        kept: KeptRows,
        users: np.ndarray,
        items: np.ndarray,
        labels: np.ndarray,
        weights: np.ndarray | float,
        l2: float,
        graph: sp.csr_matrix | None,
        adjacency: torch.Tensor | None = None,
        negatives: np.ndarray | None = None,
    ):
        device = model.user_emb.weight.device
        n_users = model.n_users
        self.n_layers = getattr(model, "n_layers", 0) if graph is not None else 0
        self.model, self.l2 = model, l2
        row_nodes_u, row_nodes_i = users.astype(np.int64), n_users + items.astype(np.int64)
        n_nodes = n_users + model.n_items
        row_nodes_j = None if negatives is None else n_users + negatives.astype(np.int64)
        ends = [row_nodes_u, row_nodes_i] + ([] if row_nodes_j is None else [row_nodes_j])
        closure = expand(
            graph if self.n_layers else None, np.concatenate(ends), self.n_layers, size=n_nodes
        )
        everything = len(closure) > WHOLE_GRAPH_SHARE * n_nodes
        if (
            everything
        ):  # propagating a few nodes more is cheaper than cutting the graph down to the closure
            closure = np.arange(n_nodes)
        self.size, self.closure = len(closure), closure
        slot = np.full(n_nodes, -1, np.int64)  # node -> position in the closure
        slot[closure] = np.arange(self.size)
        kept_nodes = kept.nodes(n_users)
        inside = slot[kept_nodes] >= 0

        def on(array, dtype=torch.long):
            return torch.tensor(np.asarray(array), dtype=dtype, device=device)

        self.kept_position, self.kept_theta = (
            on(slot[kept_nodes[inside]]),
            on(np.flatnonzero(inside)),
        )
        self.row_u, self.row_i = on(slot[row_nodes_u]), on(slot[row_nodes_i])
        self.row_j = None if row_nodes_j is None else on(slot[row_nodes_j])
        self.labels = on(labels.copy(), torch.float32)
        self.weights = on(
            np.broadcast_to(np.asarray(weights, np.float32), (len(users),)), torch.float32
        )
        table = torch.cat([model.user_emb.weight.detach(), model.item_emb.weight.detach()])
        self.base = table if everything else table[on(closure)]
        self.theta0 = kept.gather(model)
        """The kept rows' current values: the point the gradient and Hessian are taken at."""
        self.graph = self.adjacency = None
        if self.n_layers:
            self.graph, self.adjacency = self._on_closure(graph, adjacency)
        self.n_rows = len(users)
        self._pairs: tuple[torch.Tensor, ...] | None = None

    def _on_closure(
        self, graph: sp.csr_matrix, adjacency: torch.Tensor | None = None
    ) -> tuple[sp.csr_matrix, torch.Tensor]:
        """``graph`` restricted to the closure's nodes, and as the tensor propagation uses."""
        if self.size == graph.shape[0]:
            return graph, scipy_to_adjacency(
                graph, self.base.device
            ) if adjacency is None else adjacency
        graph = graph[self.closure][:, self.closure]
        return graph, scipy_to_adjacency(graph, self.base.device)

    def on_graph(
        self,
        graph: sp.csr_matrix,
        weights: np.ndarray | None = None,
        adjacency: torch.Tensor | None = None,
    ) -> RestrictedObjective:
        """The same rows and kept rows scored with another graph that has no edge this one lacks (the
        graph after deleting edges): its closure is inside this one's, so nothing else changes.
        ``weights``: other row weights (the pattern of rows is shared all the same); ``adjacency``:
        as for the constructor."""
        crow, column, pair_weights, pair_labels = (
            self.pair_pattern()
        )  # the same rows: built once, shared
        twin = copy.copy(self)
        twin.graph, twin.adjacency = self._on_closure(graph, adjacency)
        if weights is not None:
            twin.weights = torch.as_tensor(
                np.asarray(weights, np.float32), device=self.weights.device
            )
            twin._pairs = (
                crow,
                column,
                twin.weights.repeat(2).index_select(0, self._pair_order),
                pair_labels,
            )
        return twin

    @property
    def pairwise(self) -> bool:
        """Whether the rows are BPR triples (user, item, negative item)."""
        return self.row_j is not None

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        embeddings = self.embeddings(theta)
        reps = (
            self.model.propagate(embeddings, self.adjacency)
            if self.adjacency is not None
            else embeddings
        )
        r_u = reps.index_select(0, self.row_u)
        logits = (r_u * reps.index_select(0, self.row_i)).sum(-1)
        if self.pairwise:
            loss = -F.logsigmoid(logits - (r_u * reps.index_select(0, self.row_j)).sum(-1))
        else:
            loss = F.binary_cross_entropy_with_logits(logits, self.labels, reduction="none")
        if self.l2:
            ends = (self.row_u, self.row_i) + ((self.row_j,) if self.pairwise else ())
            loss = loss + self.l2 / 2 * sum(
                embeddings.index_select(0, end).pow(2).sum(-1) for end in ends
            )
        return (self.weights * loss).sum()

    def embeddings(self, theta: torch.Tensor | None = None) -> torch.Tensor:
        """The closure's embedding rows with the kept rows set to ``theta`` (default ``theta0``)."""
        theta = self.theta0 if theta is None else theta
        return self.base.index_put((self.kept_position,), theta[self.kept_theta])

    def _propagate(self, embeddings: torch.Tensor) -> torch.Tensor:
        return (
            self.model.propagate(embeddings, self.adjacency)
            if self.adjacency is not None
            else embeddings
        )

    def pair_pattern(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The rows as a symmetric closure x closure CSR pattern, each row stored at (u, i) and at (i, u):
        (crow indices, column indices, and each entry's row weight and label). Built once and shared
        with :meth:`on_graph` twins, so logits come from a sampled dense-dense product and per-node
        sums from a sparse-dense one, without gathering a (rows x dim) copy of the representations."""
        if self.pairwise:
            raise NotImplementedError(
                "the closed forms are the BCE objective's: differentiate a pairwise one by autograd"
            )
        if self._pairs is None:
            ends, others = torch.cat([self.row_u, self.row_i]), torch.cat([self.row_i, self.row_u])
            order = self._pair_order = _grouped_order(ends, self.size)
            crow = torch.zeros(self.size + 1, dtype=torch.long, device=ends.device)
            crow[1:] = torch.cumsum(torch.bincount(ends, minlength=self.size), 0)
            self._pairs = (
                crow,
                others.index_select(0, order),
                self.weights.repeat(2).index_select(0, order),
                self.labels.repeat(2).index_select(0, order),
            )
        return self._pairs

    def _pair_matrix(self, values: torch.Tensor) -> torch.Tensor:
        crow, column, _, _ = self.pair_pattern()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
            return torch.sparse_csr_tensor(crow, column, values, size=(self.size, self.size))

    @torch.no_grad()
    def analytic_gradient(self) -> torch.Tensor:
        """The gradient at ``theta0`` in closed form (what :func:`gradient` gives by autograd, without
        building a graph): with R = P E and residuals d_r = w_r (sigma(x_r) - y_r),
        grad_E = P' [sum_r d_r (r_i at u, r_u at i)] + l2 n_v e_v, the bracket being W R for the
        symmetric sparse W holding d_r at (u, i) and (i, u)."""
        embeddings = self.embeddings()
        reps = self._propagate(embeddings)
        if self.n_rows:
            _, _, weights, labels = self.pair_pattern()
            ones = torch.ones(len(weights), device=reps.device, dtype=reps.dtype)
            logits = torch.sparse.sampled_addmm(
                self._pair_matrix(ones), reps, reps.T, beta=0.0
            ).values()
            residual = weights * (torch.sigmoid(logits) - labels)
            by_rep = self._pair_matrix(residual) @ reps
        else:
            by_rep = torch.zeros_like(embeddings)
        full = self._propagate(by_rep)
        if self.l2:
            counts = torch.zeros(self.size, device=embeddings.device)
            counts.index_add_(0, self.row_u, self.weights).index_add_(0, self.row_i, self.weights)
            full += (self.l2 * counts)[:, None] * embeddings
        out = torch.zeros_like(self.theta0)
        out[self.kept_theta] = full[self.kept_position]
        return out

    @torch.no_grad()
    def analytic_hvp(self) -> Operator:
        """v -> H v at ``theta0`` in closed form: the same Hessian as double backprop, several times faster.

        Representations are linear in the embeddings (R = P E, P symmetric for LightGCN's mean of
        powers of a symmetric adjacency), and each row's loss depends on them through the bilinear
        logit <r_u, r_i>, so H v = P' [ sigma' dx (r_i, r_u) + (sigma - y)(dr_i, dr_u) ] + l2 n_v v.
        """
        if self.pairwise:
            raise NotImplementedError(
                "the closed forms are the BCE objective's: differentiate a pairwise one by autograd"
            )
        embeddings = self.embeddings()
        reps = self._propagate(embeddings)
        r_u, r_i = reps.index_select(0, self.row_u), reps.index_select(0, self.row_i)
        logits = (r_u * r_i).sum(-1)
        probability = torch.sigmoid(logits)
        curvature = (self.weights * probability * (1 - probability))[:, None]
        residual = (self.weights * (probability - self.labels))[:, None]
        counts = torch.zeros(self.size, device=embeddings.device)
        counts.index_add_(0, self.row_u, self.weights).index_add_(0, self.row_i, self.weights)
        l2_diagonal = (self.l2 * counts)[:, None]

        def hvp(v: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                direction = torch.zeros_like(self.base)
                direction[self.kept_position] = v[self.kept_theta]
                d_reps = self._propagate(direction)
                d_u, d_i = d_reps.index_select(0, self.row_u), d_reps.index_select(0, self.row_i)
                coefficient = curvature * torch.addcmul(d_u * r_i, r_u, d_i).sum(-1, keepdim=True)
                grad = torch.zeros_like(self.base)
                grad.index_add_(0, self.row_u, torch.addcmul(residual * d_i, coefficient, r_i))
                grad.index_add_(0, self.row_i, torch.addcmul(residual * d_u, coefficient, r_u))
                full = self._propagate(grad) + l2_diagonal * direction
                out = torch.zeros_like(v)
                out[self.kept_theta] = full[self.kept_position]
                return out

        return hvp


def gradient(
    objective: Callable[[torch.Tensor], torch.Tensor], theta: torch.Tensor
) -> torch.Tensor:
    theta = theta.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(objective(theta), theta, allow_unused=True)
    return torch.zeros_like(theta) if grad is None else grad


def hessian_vector_product(
    objective: Callable[[torch.Tensor], torch.Tensor], theta: torch.Tensor
) -> Operator:
    """v -> H v at ``theta`` by double backprop; the first backward pass is built once and reused."""
    theta = theta.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(objective(theta), theta, create_graph=True, allow_unused=True)
    if grad is None or not grad.requires_grad:
        return lambda v: torch.zeros_like(v)

    def hvp(v: torch.Tensor) -> torch.Tensor:
        (out,) = torch.autograd.grad(grad, theta, v, retain_graph=True, allow_unused=True)
        return torch.zeros_like(v) if out is None else out

    return hvp


def block_preconditioner(
    objective: RestrictedObjective, chunk: int = 4096, diagonal: bool = False
) -> torch.Tensor:
    """Per kept row, the (dim x dim) Gauss-Newton block of the Hessian of ``objective`` (or, with
    ``diagonal``, only its diagonal: shape (rows, dim), about 50x cheaper to form for dim 48).

    For MF these are exactly the diagonal blocks of the Hessian (sum of sigma'(x) q q^T plus
    ``l2`` per row; for a BPR triple, sigma'(z) times (q_i - q_j)(q_i - q_j)' at the user and
    p_u p_u' at either item, z = x_ui - x_uj); for LightGCN the own-embedding path of propagation
    only (weight 1/(L+1)), which is what a preconditioner needs: cheap, positive semi-definite,
    close to the diagonal.
    """
    with torch.no_grad():
        base = objective.embeddings()
        reps = (
            objective.model.propagate(base, objective.adjacency)
            if objective.adjacency is not None
            else base
        )
        u_rep, i_rep = reps.index_select(0, objective.row_u), reps.index_select(0, objective.row_i)
        logits = (u_rep * i_rep).sum(-1)
        if objective.pairwise:
            j_rep = reps.index_select(0, objective.row_j)
            logits = logits - (u_rep * j_rep).sum(-1)
            sides = (
                (objective.row_u, i_rep - j_rep),
                (objective.row_i, u_rep),
                (objective.row_j, u_rep),
            )
        else:
            sides = ((objective.row_u, i_rep), (objective.row_i, u_rep))
        curvature = (
            objective.weights
            * torch.sigmoid(logits)
            * torch.sigmoid(-logits)
            / (objective.n_layers + 1) ** 2
        )
        size, dim = objective.theta0.shape
        block_of = torch.full((objective.size,), -1, dtype=torch.long, device=base.device)
        block_of[objective.kept_position] = objective.kept_theta
        blocks = torch.zeros((size, dim) if diagonal else (size, dim, dim), device=base.device)
        counts = torch.zeros(size, device=base.device)
        for end, other in sides:
            side = block_of[end]
            rows = torch.nonzero(side >= 0).squeeze(1)
            if diagonal:
                blocks.index_add_(0, side[rows], curvature[rows, None] * other[rows].square())
            else:
                for start in range(0, len(rows), chunk):
                    r = rows[start : start + chunk]
                    o = other[r]
                    blocks.index_add_(
                        0, side[r], curvature[r, None, None] * o[:, :, None] * o[:, None, :]
                    )
            counts.index_add_(0, side[rows], objective.weights[rows])
        if diagonal:
            blocks += (objective.l2 * counts)[:, None]
        else:
            blocks += (objective.l2 * counts)[:, None, None] * torch.eye(dim, device=base.device)
    return blocks


def block_solver(blocks: torch.Tensor, damping: float) -> Operator:
    """v -> (blocks + damping I)^-1 v row-block by row-block (Cholesky, batched; elementwise for diagonals)."""
    if blocks.dim() == 2:
        inverse = 1.0 / (blocks.clamp_min(0) + damping)
        return lambda v: v * inverse
    eye = torch.eye(blocks.shape[-1], device=blocks.device, dtype=blocks.dtype)
    factor, info = torch.linalg.cholesky_ex(blocks + damping * eye)
    if (info > 0).any():  # a block is not positive definite: fall back to its diagonal
        bad = info > 0
        diagonal = torch.diagonal(blocks[bad], dim1=-2, dim2=-1).clamp_min(0) + damping
        factor[bad] = torch.diag_embed(diagonal.sqrt())
    return lambda v: _cholesky_solve(v.unsqueeze(-1), factor).squeeze(-1)


def segment_groups(
    segments: torch.Tensor,
    n_segments: int,
    dim: int,
    budget: int = 1 << 22,
    spread: float = 1.25,
    pad: int | None = None,
):
    """Segments (rows sharing a non-negative segment id) in groups of similar size (within ``spread``,
    at most ``budget`` padded elements of width ``dim``): yields (segment ids, (group, longest) row
    index, mask of the real rows), for padded batched matmuls instead of per-row outer products.
    Padding slots of the index hold ``pad`` (a zero row the caller appends saves masking; None: a
    real row, which the caller masks)."""
    shifted = segments.clamp_min(-1) + 1
    counts = torch.bincount(shifted, minlength=n_segments + 1)[1:]
    order = _grouped_order(shifted, n_segments + 1)
    starts = (
        torch.cumsum(counts, 0) - counts + (len(segments) - int(counts.sum()))
    )  # negatives sort first
    by_size = torch.argsort(counts)
    by_size = by_size[counts[by_size] > 0]
    sizes = counts[by_size].tolist()
    first, n = 0, len(sizes)
    while first < n:
        # sizes ascend: the group takes the segments within ``spread`` of its first, as many as the budget allows
        last = bisect.bisect_right(sizes, spread * sizes[first] + 1, first + 1)
        last = max(first + 1, min(last, first + budget // (sizes[last - 1] * dim)))
        group, longest = by_size[first:last], sizes[last - 1]
        offsets = torch.arange(longest, device=segments.device)
        mask = offsets[None, :] < counts[group][:, None]
        index = order[torch.where(mask, starts[group][:, None] + offsets[None, :], 0)]
        yield group, (index if pad is None else index.masked_fill_(~mask, pad)), mask
        first = last


def _gather(rows: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``rows[index]`` for a 2-D index, by a 1-D ``index_select`` (on CPU a row copy, not per-element indexing)."""
    return rows.index_select(0, index.reshape(-1)).view(*index.shape, -1)


def segment_outer_sum(
    segments: torch.Tensor,
    left: torch.Tensor,
    right: torch.Tensor,
    n_segments: int,
    weights: torch.Tensor | None = None,
    budget: int = 1 << 22,
    spread: float = 1.25,
    in_group_order: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """sum_k w_k left_k right_k' for each segment: shape (n_segments, d, d); one batched matmul per group
    (:func:`segment_groups`), so no (rows, d, d) outer product is ever formed.
    Rows with a negative segment are ignored. With ``left is right`` and no negative weight (a Gram
    matrix, as every curvature sum is) the rows are scaled by sqrt(w) once and gathered once per group.
    ``in_group_order``: return (sums, segments) instead, the sums of the segments that have rows in the
    order the groups compute them, each group's matmul writing its slice in place, where a caller
    that can reorder its own indices (a sparse matrix's columns) saves scattering them.
    """
    dim = left.shape[1]
    groups = list(segment_groups(segments, n_segments, dim, budget, spread, pad=len(segments)))
    if in_group_order:
        order = torch.cat([group for group, _, _ in groups]) if groups else segments.new_zeros(0)
        out = torch.empty((len(order), dim, dim), dtype=left.dtype, device=left.device)
    else:
        out = torch.empty((n_segments, dim, dim), dtype=left.dtype, device=left.device)
        unwritten = torch.nonzero(
            torch.bincount(segments[segments >= 0], minlength=n_segments) == 0
        ).squeeze(1)
        if len(unwritten):  # segments without rows; the loop below writes every other one
            out[unwritten] = 0

    gram = left is right and (weights is None or bool((weights >= 0).all()))

    # rows scaled once (by sqrt(w) on both sides of a Gram matrix), with a zero row that padding points at
    def padded(rows: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
        buffer = rows.new_empty((len(rows) + 1, dim))
        buffer[-1] = 0
        if scale is None:
            buffer[:-1] = rows
        else:
            torch.mul(rows, scale[:, None], out=buffer[:-1])
        return buffer

    if gram:
        left = right = padded(right, None if weights is None else weights.sqrt())
    else:
        left, right = padded(left, weights), padded(right, None)
    start = 0
    for group, index, _ in groups:
        gathered_right = _gather(right, index)
        gathered_left = gathered_right if gram else _gather(left, index)
        if in_group_order:
            torch.bmm(
                gathered_left.transpose(1, 2), gathered_right, out=out[start : start + len(group)]
            )
            start += len(group)
        else:
            out.index_copy_(0, group, torch.bmm(gathered_left.transpose(1, 2), gathered_right))
    return (out, order) if in_group_order else out


@dataclass
class LowRankBlocks:
    """Diagonal Hessian blocks of the form sum_k w_k z_k z_k' + diagonal_u I (MF's: z = the other end's
    row, w = sigma'), kept as their rows: a block with fewer rows than dimensions is solved through
    the Woodbury identity on its (rows x rows) Gram matrix instead of a (dim x dim) Cholesky."""

    segments: torch.Tensor
    """The block (kept row) each z belongs to; -1: none."""
    rows: torch.Tensor
    weights: torch.Tensor
    diagonal: torch.Tensor
    """Per block, the multiple of I added (l2 times the weighted row count)."""

    @property
    def size(self) -> int:
        return len(self.diagonal)

    def diagonal_mean(self) -> float:
        """Mean of the blocks' diagonal entries (what the damping is scaled by)."""
        squares = torch.where(
            self.segments >= 0, self.weights * self.rows.square().sum(-1), 0.0
        ).sum()
        return float(squares / (self.size * self.rows.shape[1]) + self.diagonal.mean())

    def dense(self) -> torch.Tensor:
        blocks = segment_outer_sum(
            self.segments, self.rows, self.rows, self.size, weights=self.weights
        )
        return blocks + self.diagonal[:, None, None] * torch.eye(
            self.rows.shape[1], device=self.rows.device
        )

    def solve(self, b: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        """x_u = (block_u + shift_u I)^-1 b_u for every block (shift > 0 makes each positive definite)."""
        dim = self.rows.shape[1]
        total = self.diagonal + shift  # > 0
        x = b / total[:, None]  # blocks without rows
        for group, index, mask in segment_groups(self.segments, self.size, dim):
            z = _gather(self.rows, index).mul_(
                (mask * _gather(self.weights[:, None], index).squeeze(-1))
                .clamp_min(0)
                .sqrt()[:, :, None]
            )  # (g, m, d)
            s = total[group]
            if z.shape[1] < dim:  # Woodbury: x = (b - Z' (s I + Z Z')^-1 Z b) / s
                gram = torch.bmm(z, z.transpose(1, 2))
                gram.diagonal(dim1=1, dim2=2).add_(s[:, None])
                zb = torch.bmm(z, b[group].unsqueeze(-1))
                y = _cholesky_solve(zb, _cholesky(gram))
                x[group] = (b[group] - torch.bmm(z.transpose(1, 2), y).squeeze(-1)) / s[:, None]
            else:
                block = torch.bmm(z.transpose(1, 2), z)
                block.diagonal(dim1=1, dim2=2).add_(s[:, None])
                x[group] = _cholesky_solve(b[group].unsqueeze(-1), _cholesky(block)).squeeze(-1)
        return x


def _cholesky_solve(b: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``torch.cholesky_solve`` by two batched triangular solves, which MKL runs faster on many small blocks."""
    return torch.linalg.solve_triangular(
        factor.mT, torch.linalg.solve_triangular(factor, b, upper=False), upper=True
    )


def _cholesky(matrices: torch.Tensor) -> torch.Tensor:
    factor, info = torch.linalg.cholesky_ex(matrices)
    if (info > 0).any():  # positive definite in exact arithmetic; rounding can still break it
        raise SolverError(
            "a per-row Newton block is not positive definite in float precision; increase damping"
        )
    return factor


def _propagation_rows(objective: RestrictedObjective, rows: np.ndarray) -> sp.csr_matrix:
    """Rows ``rows`` (closure positions) of LightGCN's propagation P = mean_k A^k over the closure."""
    graph = objective.graph.astype(np.float64)
    power = sp.csr_matrix(
        (np.ones(len(rows)), (np.arange(len(rows)), rows)), shape=(len(rows), graph.shape[0])
    )
    total = power.copy()
    for _ in range(objective.n_layers):
        power = power @ graph
        total = total + power
    return (total / (objective.n_layers + 1)).tocsr()


def _triangle_maps(dim: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """For (dim x dim) matrices flattened row-major: the positions of the upper triangle (i <= j), and
    for every position the index of its entry in that triangle (a symmetric matrix from its triangle).
    A sparse product over the triangle moves half the bytes: for dim 32 on this project's CPU, 0.8 ms
    against 2.0-2.5 ms for the full rows on ML-100K's sizes (1,374 blocks from 2,300 sums)."""
    rows, cols = torch.triu_indices(dim, dim, device=device)
    symmetric = torch.empty((dim, dim), dtype=torch.long, device=device)
    symmetric[rows, cols] = symmetric[cols, rows] = torch.arange(len(rows), device=device)
    return rows * dim + cols, symmetric.reshape(-1)


def _reached_by_both_ends(
    objective: RestrictedObjective, reach: sp.csr_matrix | None
) -> tuple[np.ndarray, ...]:
    """Every (kept node u, training row r = (v, j)) with P_vu P_ju != 0: u's slot in ``reach``'s rows,
    the row, and P_vu P_ju.

    With one layer on the bipartite graph, P = (I + A) / 2 and no third node neighbours both a user
    and an item, so u is one of the row's own ends and P_vu P_ju = A_vj / 4: found by looking the
    row's edge up, in time linear in the rows. Deeper propagation intersects ``reach``'s columns
    (cost: the summed reach of every row's ends, large around popular nodes).
    """
    row_u, row_i = objective.row_u.cpu().numpy(), objective.row_i.cpu().numpy()
    if objective.n_layers == 1:
        graph = objective.graph
        if not graph.has_sorted_indices:
            graph = graph.sorted_indices()
        position, found = find_entries(graph, row_u, row_i)
        edge = np.zeros(len(row_u))
        edge[found] = graph.data[position[found]]
        slot_of = np.full(objective.size, -1, np.int64)
        slot_of[objective.kept_position.cpu().numpy()] = np.arange(len(objective.kept_position))
        slots, rows, products = [], [], []
        for end in (row_u, row_i):
            hit = np.flatnonzero((slot_of[end] >= 0) & (edge != 0))
            slots.append(slot_of[end[hit]])
            rows.append(hit)
            products.append(edge[hit] / 4)
        return np.concatenate(slots), np.concatenate(rows), np.concatenate(products)
    by_column = reach.tocsc()
    both = by_column[:, row_u].multiply(by_column[:, row_i]).tocoo()  # (kept x rows): P_vu P_ju
    return both.row, both.col, both.data


def hessian_blocks(
    objective: RestrictedObjective,
    low_rank: bool = False,
    neighbours: NeighbourSample | None = None,
) -> tuple[torch.Tensor | LowRankBlocks, torch.Tensor]:
    """The exact (dim x dim) diagonal blocks of the Hessian of ``objective``, one per kept row, and
    per row an upper bound of its coupling to all other rows, sum_{w != u} ||H_uw||_2.

    Row r = (v, j) has logit x_r = <r_v, r_j>, r = P e (MF: P = I), so for a kept row u
    d x_r / d e_u = P_vu r_j + P_ju r_v and d^2 x_r / d e_u^2 = 2 P_vu P_ju I, giving
    H_uu = sum_r sigma'_r (P_vu r_j + P_ju r_v)(...)' + 2 (sigma_r - y_r) P_vu P_ju I + l2 n_u I.
    Expanded: (P o P)' M + X + X' + s I, where M_n = sum over rows with endpoint n of
    sigma' r_other r_other' (the MF block), X_u = sum_r P_vu P_ju sigma' r_j r_v' over the rows
    whose two ends both reach u (for one layer: u's own positive edges), and s the second-order sum.
    Everything is built by batched matmuls over rows (:func:`segment_outer_sum`), never per row.
    For MF the cross terms vanish and the blocks are sum_r sigma' q q' + l2 n_u I (positive
    semi-definite); for LightGCN the second-order term can make a block indefinite.

    The coupling bound (block Gershgorin): with |d x_r / d e_w| <= P_vw |r_j| + P_jw |r_v| and
    s_n = sum_w P_nw, sum_w ||H_uw|| <= sum_r sigma' b_ru T_r + |sigma - y| (P_vu s_j + P_ju s_v),
    b_ru = P_vu |r_j| + P_ju |r_v|, T_r = s_v |r_j| + s_j |r_v|, less the row's own term; for MF
    that is sum over u's rows of sigma' |r_u| |r_i| + |sigma - y|. Linear in the rows.

    ``low_rank``: for MF, return the blocks as :class:`LowRankBlocks` (their rows), not formed.
    ``neighbours`` (one-layer LightGCN): the sums over P's rows run over a sample of each kept
    node's neighbours (:func:`sample_neighbours`, unbiased), so only the drawn nodes' M are formed.
    """
    with torch.no_grad():
        base = objective.embeddings()
        reps = (
            objective.model.propagate(base, objective.adjacency)
            if objective.adjacency is not None
            else base
        )
        r_u, r_i = (
            reps.index_select(0, objective.row_u),
            reps.index_select(0, objective.row_i),
        )  # index_select: row copies, cheaper than reps[...] on CPU
        probability = torch.sigmoid((r_u * r_i).sum(-1))
        curvature = objective.weights * probability * (1 - probability)
        residual = objective.weights * (probability - objective.labels)
        size, dim = objective.theta0.shape
        device = base.device
        kept_of = torch.full((objective.size,), -1, dtype=torch.long, device=device)
        kept_of[objective.kept_position] = objective.kept_theta
        counts = torch.zeros(objective.size, device=device)
        counts.index_add_(0, objective.row_u, objective.weights).index_add_(
            0, objective.row_i, objective.weights
        )
        l2 = torch.zeros(size, device=device)
        l2[objective.kept_theta] = objective.l2 * counts[objective.kept_position]
        ends = torch.cat([objective.row_u, objective.row_i])
        both_curvature = torch.cat([curvature, curvature])
        norm_u, norm_i = r_u.norm(dim=-1), r_i.norm(dim=-1)
        magnitude = residual.abs()
        coupling = torch.zeros(size, device=device)
        if objective.adjacency is None:  # MF: P = I, only a row's own ends reach it
            segment = kept_of[ends]
            at_kept = segment >= 0  # gather only the endpoints whose block is wanted
            other = reps.index_select(0, torch.cat([objective.row_i, objective.row_u])[at_kept])
            per_row = curvature * norm_u * norm_i + magnitude
            total = torch.zeros(objective.size, device=device).index_add_(
                0, ends, torch.cat([per_row, per_row])
            )
            coupling[objective.kept_theta] = total[objective.kept_position]
            if low_rank:
                return LowRankBlocks(segment[at_kept], other, both_curvature[at_kept], l2), coupling
            blocks = segment_outer_sum(
                segment[at_kept], other, other, size, weights=both_curvature[at_kept]
            )
        else:
            others = torch.cat([r_i, r_u])
            if neighbours is None:
                reach = _propagation_rows(
                    objective, objective.kept_position.cpu().numpy()
                )  # (kept x closure)
                needed = np.unique(reach.indices)  # the nodes whose M reaches a kept row
                near = reach[:, needed]
                near_squared = near.multiply(near).tocsr()
            else:
                if objective.n_layers != 1:
                    raise ValueError("sampled neighbours stand for one-layer propagation only")
                reach = None
                kept_rows = (
                    objective.kept_theta.cpu().numpy()
                )  # kept nodes with rows (the others have no block)
                linear, near_squared = (
                    _select_rows(neighbours.linear, kept_rows),
                    _select_rows(neighbours.squared, kept_rows),
                )
                drawn = expand(
                    None, linear.indices, 0, size=linear.shape[1]
                )  # sorted, unique: marked in a table
                needed = np.searchsorted(objective.closure, drawn)  # closure positions
                if (needed >= objective.size).any() or (
                    objective.closure[needed.clip(max=objective.size - 1)] != drawn
                ).any():
                    raise ValueError(
                        "every sampled neighbour must be an end of the objective's rows"
                    )
                near, near_squared = (
                    _select_columns(linear, drawn),
                    _select_columns(near_squared, drawn),
                )
            slot = torch.full((objective.size,), -1, dtype=torch.long, device=device)
            slot[torch.as_tensor(needed, device=device)] = torch.arange(len(needed), device=device)
            own, summed = segment_outer_sum(
                slot[ends], others, others, len(needed), weights=both_curvature, in_group_order=True
            )
            needed_t = torch.as_tensor(needed, dtype=torch.long, device=device)
            # the sums come in the groups' order (a needed node without rows has none, and no curvature):
            # P o P's columns reordered to it
            squared = scipy_to_adjacency(
                _select_columns(near_squared, summed.cpu().numpy()), device
            )
            summed_nodes = needed_t[summed]
            upper, symmetric = _triangle_maps(
                dim, device
            )  # the M are symmetric: spread one triangle
            spread = torch.sparse.mm(
                squared, own.reshape(len(own), dim * dim).index_select(1, upper)
            )
            spread = spread.index_select(1, symmetric).reshape(-1, dim, dim)
            if (
                len(spread) == size
            ):  # every kept row has training rows (kept_theta is then 0..size-1)
                blocks = spread
            else:
                blocks = torch.zeros((size, dim, dim), device=device)
                blocks[objective.kept_theta] = spread
            slot_of_both, row_of_both, product = _reached_by_both_ends(objective, reach)
            kept_index = objective.kept_theta[
                torch.as_tensor(slot_of_both, dtype=torch.long, device=device)
            ]
            row = torch.as_tensor(row_of_both, dtype=torch.long, device=device)
            w = torch.as_tensor(product, dtype=torch.float32, device=device)
            if objective.n_layers == 1:
                # u is an end of each of its rows, so X_u = S_u r_u' (u the user) or r_u S_u' (the item),
                # S_u = sum of the weighted other ends: rank one, no per-row outer product
                position_of = torch.zeros(size, dtype=torch.long, device=device)
                position_of[objective.kept_theta] = objective.kept_position
                at_user_end = objective.row_u[row] == position_of[kept_index]
                other_end = others.index_select(
                    0, torch.where(at_user_end, row, row + len(r_u))
                )  # others = (r_i, r_u)
                partners = torch.zeros((size, dim), device=device).index_add_(
                    0, kept_index, (w * curvature[row])[:, None] * other_end
                )
                own_rep = reps.index_select(0, position_of)
                blocks.baddbmm_(
                    torch.stack([partners, own_rep], 2), torch.stack([own_rep, partners], 1)
                )  # S r' + r S'
            else:
                cross = segment_outer_sum(
                    kept_index,
                    r_i.index_select(0, row),
                    r_u.index_select(0, row),
                    size,
                    weights=w * curvature[row],
                )
                blocks += cross + cross.transpose(1, 2)
            second = torch.zeros(size, device=device).index_add_(
                0, kept_index, 2 * w * residual[row]
            )
            l2 = l2 + second
            row_sum = objective.model.propagate(
                torch.ones((objective.size, 1), device=device), objective.adjacency
            ).squeeze(1)  # s = P 1
            s_u, s_i = row_sum[objective.row_u], row_sum[objective.row_i]
            spread_r = curvature * (s_u * norm_i + s_i * norm_u)  # sigma' T_r
            by_end = torch.zeros(objective.size, device=device).index_add_(
                0,
                ends,
                torch.cat(
                    [spread_r * norm_i + magnitude * s_i, spread_r * norm_u + magnitude * s_u]
                ),
            )
            own_square = torch.zeros(objective.size, device=device).index_add_(
                0, ends, torch.cat([curvature * norm_i**2, curvature * norm_u**2])
            )
            linear = scipy_to_adjacency(near, device)
            coupling[objective.kept_theta] = (
                torch.sparse.mm(linear, by_end[needed_t][:, None])
                - torch.sparse.mm(squared, own_square[summed_nodes][:, None])
            ).squeeze(1)
            coupling.index_add_(
                0,
                kept_index,
                -2 * w * (curvature[row] * norm_u[row] * norm_i[row] + magnitude[row]),
            )
            coupling.clamp_(min=0)
        blocks.diagonal(dim1=1, dim2=2).add_(l2[:, None])
    return blocks, coupling


@dataclass
class BlockSolve:
    """The per-row Newton step and what it took."""

    x: torch.Tensor
    raised_blocks: int
    """Blocks that were not positive definite after damping and got their own extra shift."""


def block_newton(
    blocks: torch.Tensor | LowRankBlocks,
    b: torch.Tensor,
    damping: float,
    row_damping: torch.Tensor | None = None,
    overwrite_blocks: bool = False,
) -> BlockSolve:
    """Solve (block_u + (damping + row_damping_u) I) x_u = b_u for every row at once (batched Cholesky).

    With ``row_damping`` = the coupling bound of :func:`hessian_blocks`, the block-diagonal matrix
    is at least the whole Hessian (block Gershgorin), so the step minimises a quadratic upper
    bound of the objective's model and cannot overshoot where the full Hessian is indefinite.
    A block still not positive definite (LightGCN's second-order term) is shifted so that its
    smallest eigenvalue becomes ``damping``: the damped Newton step of that row alone.
    :class:`LowRankBlocks` are positive semi-definite, so ``damping`` > 0 is enough.
    ``overwrite_blocks``: damp the formed blocks in place (a caller done with them saves a copy).
    """
    if isinstance(blocks, LowRankBlocks):
        shift = torch.full_like(blocks.diagonal, damping) + (
            0 if row_damping is None else row_damping
        )
        x = blocks.solve(b, shift)
        if not torch.isfinite(x).all():
            raise SolverError(
                "the per-row Newton solve returned a non-finite step; increase damping"
            )
        return BlockSolve(x, 0)
    damped = blocks if overwrite_blocks else blocks.clone()  # + shift I, on the diagonal only
    damped.diagonal(dim1=-2, dim2=-1).add_(
        damping if row_damping is None else (damping + row_damping)[:, None]
    )
    factor, info = torch.linalg.cholesky_ex(damped)
    bad = info > 0
    raised = int(bad.sum())
    x = _cholesky_solve(b.unsqueeze(-1), factor).squeeze(-1)
    if (
        raised
    ):  # by eigendecomposition: exact where Cholesky of a nearly singular shifted block is not
        values, vectors = torch.linalg.eigh(damped[bad])
        values = (values + (damping - values[:, :1])).clamp_min(damping)
        coordinates = (vectors.transpose(1, 2) @ b[bad].unsqueeze(-1)) / values.unsqueeze(-1)
        x[bad] = (vectors @ coordinates).squeeze(-1)
    if not torch.isfinite(x).all():
        raise SolverError("the per-row Newton solve returned a non-finite step; increase damping")
    return BlockSolve(x, raised)


# solvers -----------------------------------------------------------------------------------------------
@dataclass
class SolveResult:
    """The solution and how the solver got there."""

    x: torch.Tensor
    iterations: int
    relative_residual: float = float("nan")
    converged: bool = True
    hvps: int = 0
    history: list[float] = field(default_factory=list)
    attempts: int = 1
    """Solves run: more than one when CG restarted with more damping after non-positive curvature."""


def _dot(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a * b).sum())


def conjugate_gradient(
    hvp: Operator,
    b: torch.Tensor,
    *,
    damping: float = 0.0,
    tol: float = 1e-6,
    max_iter: int = 200,
    preconditioner: Operator | None = None,
) -> SolveResult:
    """Solve (H + damping I) x = b by (preconditioned) conjugate gradients.

    Raises :class:`SolverError` on non-positive curvature (H + damping I is not positive
    definite along a search direction: more damping is needed) or a non-finite residual.
    """
    norm_b = math.sqrt(_dot(b, b))
    x = torch.zeros_like(b)
    if norm_b == 0:
        return SolveResult(x, 0, 0.0)
    r = b.clone()
    z = preconditioner(r) if preconditioner else r
    p = z.clone()
    rz = _dot(r, z)
    result = SolveResult(x, 0)
    for it in range(1, max_iter + 1):
        ap = hvp(p) + damping * p
        result.hvps += 1
        curvature = _dot(p, ap)
        if not curvature > 0:
            raise SolverError(
                f"conjugate gradients met non-positive curvature ({curvature:.3g}) at iteration {it}: "
                "the Hessian is not positive definite; increase damping",
                shift=-curvature / max(_dot(p, p), 1e-30) if math.isfinite(curvature) else 0.0,
            )
        alpha = rz / curvature
        x += alpha * p
        r -= alpha * ap
        residual = math.sqrt(_dot(r, r)) / norm_b
        result.history.append(residual)
        if not math.isfinite(residual):
            raise SolverError(
                f"conjugate gradients diverged (residual {residual}) at iteration {it}"
            )
        result.iterations, result.relative_residual = it, residual
        if residual <= tol:
            return result
        z = preconditioner(r) if preconditioner else r
        rz_next = _dot(r, z)
        p = z + (rz_next / rz) * p
        rz = rz_next
    result.converged = False
    return result


def largest_eigenvalue(
    hvp: Operator, like: torch.Tensor, iterations: int = 30, seed: int = 0
) -> float:
    """Power iteration on H (an estimate from below, good to a few percent after 30 steps)."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    v = torch.randn(like.shape, generator=generator).to(like)
    v /= v.norm()
    value = 0.0
    for _ in range(iterations):
        w = hvp(v)
        value = _dot(v, w)
        norm = float(w.norm())
        if norm == 0:
            return 0.0
        v = w / norm
    return value


def lissa(
    hvp: Operator,
    b: torch.Tensor,
    *,
    damping: float = 0.0,
    scale: float | None = None,
    depth: int = 1000,
    tol: float = 1e-8,
) -> SolveResult:
    """LiSSA (Agarwal et al. 2017): x <- b + (I - (H + damping I) / scale) x, answer x / scale.

    Converges when every eigenvalue of H + damping I lies in (0, 2 scale); by default ``scale`` is
    1.1 times the largest eigenvalue found by power iteration. Raises :class:`SolverError` on divergence.
    """
    hvps = 0
    if scale is None:
        dominant = (
            largest_eigenvalue(hvp, b) + damping
        )  # the eigenvalue of largest magnitude, damped
        if not dominant > 0:
            raise SolverError(
                f"LiSSA needs a positive definite damped Hessian; its dominant eigenvalue is {dominant:.3g} "
                "(damping included): raise the damping, or use the 'block' or 'cg' solver"
            )
        scale = 1.1 * dominant
        hvps += 30
    if not scale > 0:
        raise SolverError(f"LiSSA needs a positive scale, got {scale}")
    x = b.clone()
    norm_b = max(float(b.norm()), 1e-30)
    result = SolveResult(x, 0)
    for it in range(1, depth + 1):
        step = b - (hvp(x) + damping * x) / scale
        hvps += 1
        change = float((step).norm()) / norm_b
        x = x + step
        result.iterations = it
        if not math.isfinite(change) or float(x.norm()) > 1e12 * norm_b:
            raise SolverError(
                f"LiSSA diverged at iteration {it}: scale {scale:.3g} is below half the largest "
                "eigenvalue, or the damped Hessian is not positive definite"
            )
        if change <= tol:
            break
    else:
        result.converged = False
    result.x, result.hvps = x / scale, hvps
    residual = b - (hvp(result.x) + damping * result.x)
    result.relative_residual = float(residual.norm()) / norm_b
    return result


def quadratic_adam(
    hvp: Operator,
    b: torch.Tensor,
    *,
    damping: float = 0.0,
    lr: float = 1e-3,
    steps: int = 100,
    evaluate: Callable[[torch.Tensor], float] | None = None,
    every: int = 1,
) -> SolveResult:
    """The reference code's solver: minimise 1/2 x'(H + damping I)x - x'b with Adam.

    Keeps the iterate ``evaluate`` scores highest (the reference uses validation AUC, every
    ``every`` steps), or the one with the lowest objective when there is no ``evaluate``.
    """
    x = torch.zeros_like(b, requires_grad=True)
    optimizer = torch.optim.Adam([x], lr=lr)
    best_x, best_value = torch.zeros_like(b), (evaluate(torch.zeros_like(b)) if evaluate else 0.0)
    result = SolveResult(best_x, 0)
    for step in range(steps + 1):  # step s looks at the iterate after s Adam steps
        current = x.detach()
        ax = hvp(current) + damping * current
        result.hvps += 1
        objective = 0.5 * _dot(current, ax) - _dot(current, b)
        if not math.isfinite(objective):
            raise SolverError(
                f"quadratic minimisation diverged at step {step}; lower its learning rate"
            )
        result.history.append(objective)
        if step and (step % every == 0 or step == steps):
            value = evaluate(current) if evaluate else -objective
            if value > best_value:
                best_x, best_value, result.iterations = current.clone(), value, step
        if step == steps:
            break
        x.grad = ax - b
        optimizer.step()
    result.x = best_x
    residual = b - (hvp(best_x) + damping * best_x)
    result.relative_residual = float(residual.norm()) / max(float(b.norm()), 1e-30)
    return result


def dense_hessian(hvp: Operator, like: torch.Tensor) -> torch.Tensor:
    """The Hessian as a dense (n x n) float64 matrix, one HVP per column (tiny problems only)."""
    n = like.numel()
    columns = []
    for j in range(n):
        e = torch.zeros(n, dtype=like.dtype, device=like.device)
        e[j] = 1.0
        columns.append(hvp(e.view_as(like)).reshape(-1).double())
    matrix = torch.stack(columns, 1)
    return (matrix + matrix.T) / 2


def exact_solve(
    hvp: Operator, b: torch.Tensor, *, damping: float = 0.0, max_size: int = 4096
) -> SolveResult:
    """Form H densely and solve (H + damping I) x = b directly: the answer the iterative solvers approximate."""
    if b.numel() > max_size:
        raise SolverError(
            f"exact solve of a {b.numel()}-parameter system is too large (limit {max_size}); use 'cg'"
        )
    matrix = dense_hessian(hvp, b) + damping * torch.eye(
        b.numel(), dtype=torch.float64, device=b.device
    )
    try:
        x = torch.linalg.solve(matrix, b.reshape(-1).double())
    except RuntimeError as exc:  # torch raises on an exactly singular matrix
        raise SolverError(f"the damped Hessian is singular; increase damping ({exc})") from None
    return SolveResult(x.to(b.dtype).view_as(b), 1, 0.0, hvps=b.numel())


class SolverConfig(BaseModel):
    """How (H + damping I) x = g is solved."""

    model_config = ConfigDict(extra="forbid")
    method: Literal["block", "cg", "lissa", "quadratic", "exact"] = "block"
    """'block' (default): the per-row Newton step, each kept row's exact dim x dim Hessian block
    (through LightGCN's propagation) solved at once, user-item cross blocks ignored: an
    approximation, one pass over the rows and no Hessian-vector products (see docs/ifru.md for
    its distance to CG and the quality it gives); 'cg': preconditioned conjugate gradients
    (4-10 steps on ML-100K); 'lissa': the LiSSA recursion; 'quadratic': the reference code's
    Adam on 1/2 x'Hx - x'g keeping the best iterate by validation AUC; 'exact': dense solve
    (tiny problems)."""
    coupling: bool = True
    """'block' only: damp each row's block by the bound on its coupling to the other rows (block
    Gershgorin), which makes the block-diagonal matrix an upper bound of the Hessian: the step
    never overshoots, with no step size to tune. Off: the bare per-row Newton step, which on an
    early-stopped ML-100K MF model (indefinite Hessian) is 60x too long and fails the guard."""
    hvp: Literal["analytic", "autograd"] = "analytic"
    """Hessian-vector products in closed form for the bilinear models ('analytic', fast) or by
    double backprop through the objective ('autograd', general); both give the same Hessian."""
    preconditioner: Literal["block", "diagonal", "none"] = "block"
    """CG preconditioner: 'block' (the per-row dim x dim Gauss-Newton blocks: about 4 iterations on
    ML-100K MF), 'diagonal' (their diagonals: about 10 iterations, but cheaper to form: on one
    loaded CPU thread 1.0-1.8 s per forget against 1.75-1.85 s for 'block'), 'none'."""
    damping: float = Field(1e-3, ge=0)
    """Damping relative to the mean diagonal of the Hessian of the kept rows, so one value fits
    every dataset and size; it keeps a singular or nearly indefinite Hessian solvable."""
    tol: float = Field(1e-3, gt=0)
    """CG stops when the residual falls below this fraction of |g| (influence estimates are not
    more accurate than that; the quality on validation does not change below it)."""
    max_iter: int = Field(100, ge=1)
    """Most CG iterations (or LiSSA recursion depth)."""
    max_damping_raises: int = Field(6, ge=0)
    """When CG meets non-positive curvature (an early-stopped model can sit where the BCE Hessian is
    indefinite), damping grows past the curvature found (at least 10x) and the solve restarts, up to
    this many times before a :class:`SolverError`."""
    quadratic_lr: float = Field(1e-3, gt=0)
    """Adam learning rate of the 'quadratic' solver (the reference code tunes it per dataset)."""
    quadratic_steps: int = Field(100, ge=1)
    """Adam steps of the 'quadratic' solver; validation AUC is computed every ``quadratic_every``."""
    quadratic_every: int = Field(5, ge=1)
    """Evaluate the 'quadratic' solver's iterate every this many steps."""


def solve(
    config: SolverConfig,
    hvp: Operator,
    b: torch.Tensor,
    *,
    scale: float,
    preconditioner: Callable[[float], Operator] | None = None,
    evaluate: Callable[[torch.Tensor], float] | None = None,
) -> tuple[SolveResult, float]:
    """Solve with the configured method; ``scale`` (mean Hessian diagonal) turns relative damping
    into an absolute one. Returns the result and the absolute damping used."""
    if config.method == "block":
        raise SolverError(
            "the 'block' solver works on the Hessian blocks, not on HVPs: use block_newton"
        )
    damping = config.damping * scale
    calls = [0]

    def counted(v: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        return hvp(v)

    for attempt in range(config.max_damping_raises + 1):
        try:
            if config.method == "cg":
                result = conjugate_gradient(
                    counted,
                    b,
                    damping=damping,
                    tol=config.tol,
                    max_iter=config.max_iter,
                    preconditioner=preconditioner(damping) if preconditioner else None,
                )
            elif config.method == "lissa":
                result = lissa(counted, b, damping=damping, depth=config.max_iter)
            elif config.method == "quadratic":
                result = quadratic_adam(
                    counted,
                    b,
                    damping=damping,
                    lr=config.quadratic_lr,
                    steps=config.quadratic_steps,
                    evaluate=evaluate,
                    every=config.quadratic_every,
                )
            else:
                result = exact_solve(counted, b, damping=damping)
            result.hvps, result.attempts = calls[0], attempt + 1
            return result, damping
        except SolverError as error:
            if attempt == config.max_damping_raises or config.method != "cg":
                raise
            damping = max(damping * 10, damping + 2 * error.shift, 1e-2 * scale)
    raise AssertionError("unreachable")
