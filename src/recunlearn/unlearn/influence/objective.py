"""The training objective as a function of chosen embedding rows, with its gradient and
Hessian-vector products by double backprop.

Influence methods never touch the whole parameter vector: they pick the rows they update
(:class:`KeptRows`) and build :class:`RestrictedObjective` over the training rows whose scores
depend on them (for LightGCN only the nodes within ``n_layers`` hops are propagated); the Hessian
blocks (:mod:`~recunlearn.unlearn.influence.blocks`) and solvers
(:mod:`~recunlearn.unlearn.influence.solvers`) work on it.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from recunlearn.errors import RecUnlearnError
from recunlearn.models.base import CFModel
from recunlearn.models.graph import expand, grouped_order, scipy_to_adjacency

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
        crow, column, _, pair_labels = self.pair_pattern()  # the same rows: built once, shared
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
        reps = self.propagate(embeddings)
        r_u = reps.index_select(0, self.row_u)
        logits = (r_u * reps.index_select(0, self.row_i)).sum(-1)
        if self.pairwise:
            loss = -F.logsigmoid(logits - (r_u * reps.index_select(0, self.row_j)).sum(-1))
        else:
            loss = F.binary_cross_entropy_with_logits(logits, self.labels, reduction="none")
        if self.l2:
            loss = loss + self.l2 / 2 * sum(
                embeddings.index_select(0, end).pow(2).sum(-1) for end in self.ends
            )
        return (self.weights * loss).sum()

    def embeddings(self, theta: torch.Tensor | None = None) -> torch.Tensor:
        """The closure's embedding rows with the kept rows set to ``theta`` (default ``theta0``)."""
        theta = self.theta0 if theta is None else theta
        return self.base.index_put((self.kept_position,), theta[self.kept_theta])

    @property
    def ends(self) -> tuple[torch.Tensor, ...]:
        """Each row's user, item (and negative item) as closure rows."""
        return (self.row_u, self.row_i) + ((self.row_j,) if self.pairwise else ())

    def l2_diagonal(self) -> torch.Tensor:
        """The L2 terms' Hessian per closure row, shape (size, 1): ``l2`` times the weights of the
        rows that end there."""
        counts = torch.zeros(self.size, device=self.base.device)
        for end in self.ends:
            counts.index_add_(0, end, self.weights)
        return (self.l2 * counts)[:, None]

    def spread(self, v: torch.Tensor) -> torch.Tensor:
        """Values of the kept rows (shape of ``theta0``) as closure rows, zero elsewhere."""
        direction = torch.zeros_like(self.base)
        direction[self.kept_position] = v[self.kept_theta]
        return direction

    def restrict(self, full: torch.Tensor) -> torch.Tensor:
        """The kept rows of closure rows ``full`` (shape of ``theta0``)."""
        out = torch.zeros_like(self.theta0)
        out[self.kept_theta] = full[self.kept_position]
        return out

    def propagate(self, embeddings: torch.Tensor) -> torch.Tensor:
        """The representations the rows are scored with: ``embeddings`` propagated over the
        closure's graph (LightGCN), or themselves (MF)."""
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
            order = self._pair_order = grouped_order(ends, self.size)
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
        reps = self.propagate(embeddings)
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
        full = self.propagate(by_rep)
        if self.l2:
            full += self.l2_diagonal() * embeddings
        return self.restrict(full)

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
        reps = self.propagate(embeddings)
        r_u, r_i = reps.index_select(0, self.row_u), reps.index_select(0, self.row_i)
        logits = (r_u * r_i).sum(-1)
        probability = torch.sigmoid(logits)
        curvature = (self.weights * probability * (1 - probability))[:, None]
        residual = (self.weights * (probability - self.labels))[:, None]
        l2_diagonal = self.l2_diagonal()

        def hvp(v: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                direction = self.spread(v)
                d_reps = self.propagate(direction)
                d_u, d_i = d_reps.index_select(0, self.row_u), d_reps.index_select(0, self.row_i)
                coefficient = curvature * torch.addcmul(d_u * r_i, r_u, d_i).sum(-1, keepdim=True)
                grad = torch.zeros_like(self.base)
                grad.index_add_(0, self.row_u, torch.addcmul(residual * d_i, coefficient, r_i))
                grad.index_add_(0, self.row_i, torch.addcmul(residual * d_u, coefficient, r_u))
                return self.restrict(self.propagate(grad) + l2_diagonal * direction)

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
