"""Influence of removed rows on a model trained with BPR (pairwise ranking on implicit feedback).

The objective differentiated is the expected BPR loss that training's stochastic negatives
estimate: sum over positives (u, i) of E_j[-log sigma(x_ui - x_uj)] plus the L2 terms, with j
uniform over the items u has no training positive with. Retraining from scratch minimises the
same expectation (it draws fresh negatives every epoch); the update estimates it with a fixed,
seeded set of ``negatives_per_positive`` negatives per positive, drawn at ``forget`` from the
training data as it was, so that the removed rows' gradient and the spillover are taken with
the same negatives on both graphs. The Hessian of the remaining rows also counts each kept item
where it serves as a negative: rows drawn uniformly with that item as their negative, weighted so
that their sum is unbiased for the expectation. It is solved by conjugate gradients (Hessian-vector
products by double backprop, the Gauss-Newton blocks as preconditioner) or by the per-row Newton
step on those blocks.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
import torch

from recunlearn.data.interactions import Interactions
from recunlearn.models.graph import expand
from recunlearn.train.loop import NEGATIVE_REDRAWS, sample_negatives
from recunlearn.unlearn.influence.blocks import LowRankBlocks, block_solver
from recunlearn.unlearn.influence.objective import (
    KeptRows,
    RestrictedObjective,
    SolverError,
    hessian_vector_product,
)
from recunlearn.unlearn.influence.sampling import hessian_rows
from recunlearn.unlearn.influence.solvers import block_newton, solve

if TYPE_CHECKING:
    from recunlearn.unlearn._approximate import Orphans
    from recunlearn.unlearn.influence.unlearner import InfluenceUnlearner


@dataclass(frozen=True)
class Triples:
    """BPR rows: each positive repeated once per negative, weighted 1 / (negatives per positive)."""

    users: np.ndarray
    items: np.ndarray
    negatives: np.ndarray
    weights: np.ndarray

    def __add__(self, other: Triples) -> Triples:
        return Triples(
            *(
                np.concatenate([getattr(self, k), getattr(other, k)])
                for k in ("users", "items", "negatives", "weights")
            )
        )

    def __len__(self) -> int:
        return len(self.users)


class NegativeSampler:
    """Seeded negatives that avoid each user's training positives, redrawn as training redraws them
    (:func:`recunlearn.train.loop.sample_negatives`), looked up in a user x item table where it is small."""

    def __init__(self, train: Interactions, per_positive: int, seed: int):
        positives = train.positives()
        self.n_items, self.per_positive = train.n_items, per_positive
        keys = positives.user.astype(np.int64) * train.n_items + positives.item
        self.table: np.ndarray | None = None
        self.keys: torch.Tensor | None = None
        if train.n_users * train.n_items <= 1 << 26:
            self.table = np.zeros(train.n_users * train.n_items, bool)
            self.table[keys] = True
        else:
            self.keys = torch.unique(torch.as_tensor(keys))
        self.generator = torch.Generator().manual_seed(seed)

    def _draw(self, users: np.ndarray) -> np.ndarray:
        if self.table is None:
            return sample_negatives(
                self.n_items, torch.as_tensor(users), self.generator, self.keys
            ).numpy()
        negatives = torch.randint(0, self.n_items, (len(users),), generator=self.generator).numpy()
        for _ in range(NEGATIVE_REDRAWS):
            found = np.flatnonzero(self.table[users * self.n_items + negatives])
            if not len(found):
                break
            negatives[found] = torch.randint(
                0, self.n_items, (len(found),), generator=self.generator
            ).numpy()
        return negatives

    def triples(
        self,
        users: np.ndarray,
        items: np.ndarray,
        weights: np.ndarray | float = 1.0,
        per_positive: int | None = None,
    ) -> Triples:
        m = per_positive or self.per_positive
        users_m, items_m = (
            np.repeat(users.astype(np.int64), m),
            np.repeat(items.astype(np.int64), m),
        )
        weights_m = (
            np.repeat(np.broadcast_to(np.asarray(weights, np.float32), (len(users),)), m) / m
        )
        return Triples(users_m, items_m, self._draw(users_m), weights_m.astype(np.float32))

    def as_negative(self, items: np.ndarray, rows: Interactions, per_item: int) -> Triples:
        """For each item, ``per_item`` rows of ``rows`` drawn uniformly with that item as their negative,
        weighted so that they sum, in expectation, to every triple of ``rows`` whose negative it is."""
        if not len(items) or not len(rows):
            return Triples(*(np.zeros(0, t) for t in (np.int64, np.int64, np.int64, np.float32)))
        drawn = torch.randint(
            0, len(rows), (len(items) * per_item,), generator=self.generator
        ).numpy()
        weight = len(rows) / (self.n_items * per_item)
        return Triples(
            rows.user[drawn].astype(np.int64),
            rows.item[drawn].astype(np.int64),
            np.repeat(items.astype(np.int64), per_item),
            np.full(len(drawn), weight, np.float32),
        )


@torch.no_grad()
def pairwise_gradient(objective: RestrictedObjective) -> torch.Tensor:
    """The gradient of a pairwise objective at its ``theta0`` in closed form (what autograd gives):
    with s_t = w_t (sigma(z_t) - 1), z_t = <r_u, r_i - r_j>, the representations' gradient holds
    s_t (r_i - r_j) at u, s_t r_u at i and -s_t r_u at j; propagation's transpose (LightGCN's P is
    symmetric) carries it to the embeddings, and each end adds its L2 term."""
    embeddings = objective.embeddings()
    reps = objective.propagate(embeddings)
    r_u, r_i, r_j = (reps.index_select(0, end) for end in objective.ends)
    difference = r_i - r_j
    slope = (objective.weights * (torch.sigmoid((r_u * difference).sum(-1)) - 1))[:, None]
    by_rep = torch.zeros_like(reps)
    by_rep.index_add_(0, objective.row_u, slope * difference)
    by_rep.index_add_(0, objective.row_i, slope * r_u).index_add_(0, objective.row_j, -slope * r_u)
    full = objective.propagate(by_rep)
    if objective.l2:
        full += objective.l2_diagonal() * embeddings
    return objective.restrict(full)


@torch.no_grad()
def pairwise_hvp(objective: RestrictedObjective):
    """v -> H v of a pairwise objective at its ``theta0`` in closed form (what double backprop gives).

    With dR = P V and dz = <dr_u, r_i - r_j> + <r_u, dr_i - dr_j>, the representations' part holds
    c (r_i - r_j) + s (dr_i - dr_j) at u, c r_u + s dr_u at i and its negative at j, where
    c = w sigma'(z) dz and s = w (sigma(z) - 1); P' carries it back and each end adds l2 v.
    """
    embeddings = objective.embeddings()
    reps = objective.propagate(embeddings)
    r_u, r_i, r_j = (reps.index_select(0, end) for end in objective.ends)
    difference = r_i - r_j
    z = (r_u * difference).sum(-1)
    curvature = (objective.weights * torch.sigmoid(z) * torch.sigmoid(-z))[:, None]
    slope = (objective.weights * (torch.sigmoid(z) - 1))[:, None]
    l2_diagonal = objective.l2_diagonal()

    def hvp(v: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            direction = objective.spread(v)
            d_reps = objective.propagate(direction)
            d_u, d_difference = (
                d_reps.index_select(0, objective.row_u),
                d_reps.index_select(0, objective.row_i) - d_reps.index_select(0, objective.row_j),
            )
            change = curvature * (
                (d_u * difference).sum(-1, keepdim=True)
                + (r_u * d_difference).sum(-1, keepdim=True)
            )
            at_items = change * r_u + slope * d_u
            grad = torch.zeros_like(objective.base)
            grad.index_add_(0, objective.row_u, change * difference + slope * d_difference)
            grad.index_add_(0, objective.row_i, at_items).index_add_(0, objective.row_j, -at_items)
            return objective.restrict(objective.propagate(grad) + l2_diagonal * direction)

    return hvp


@torch.no_grad()
def pairwise_blocks(objective: RestrictedObjective) -> tuple[LowRankBlocks, torch.Tensor]:
    """The Gauss-Newton diagonal blocks of a pairwise objective, one per kept row, kept as their rows
    (:class:`LowRankBlocks`), and per kept row a bound of its coupling to the other rows.

    For MF the blocks are exact (z is linear in each row): sigma'(z) (q_i - q_j)(q_i - q_j)' at the
    user, sigma'(z) p_u p_u' at either item, plus L2. The coupling bound (block Gershgorin) sums
    the cross blocks' norms, ||H_ui|| <= sigma' |q_i - q_j| |p_u| + sigma(-z) (the same for H_uj)
    and ||H_ij|| <= sigma' |p_u|^2: damping each block by it makes the block-diagonal matrix an upper
    bound of the Hessian, so the per-row Newton step cannot overshoot. For LightGCN both are those
    of the own-embedding path of propagation (weight 1/(L+1)), an approximation the guard checks.
    """
    reps = objective.propagate(objective.embeddings())
    r_u, r_i, r_j = (reps.index_select(0, end) for end in objective.ends)
    difference = r_i - r_j
    z = (r_u * difference).sum(-1)
    own = 1.0 / (objective.n_layers + 1)
    curvature = objective.weights * torch.sigmoid(z) * torch.sigmoid(-z) * own**2
    size = len(objective.theta0)
    device = reps.device
    block_of = torch.full((objective.size,), -1, dtype=torch.long, device=device)
    block_of[objective.kept_position] = objective.kept_theta
    ends = (objective.row_u, objective.row_i, objective.row_j)
    segments = torch.cat([block_of[end] for end in ends])
    counts = torch.zeros(objective.size, device=device)
    for end in ends:
        counts.index_add_(0, end, objective.weights)
    diagonal = torch.zeros(size, device=device)
    diagonal[objective.kept_theta] = objective.l2 * counts[objective.kept_position]
    blocks = LowRankBlocks(
        segments, torch.cat([difference, r_u, r_u]), curvature.repeat(3), diagonal
    )
    norm_u, norm_d = r_u.norm(dim=-1), difference.norm(dim=-1)
    cross = curvature * norm_u * norm_d + objective.weights * torch.sigmoid(-z) * own**2
    between_items = curvature * norm_u**2
    bound = torch.cat([2 * cross, cross + between_items, cross + between_items])
    coupling = torch.zeros(size + 1, device=device).index_add_(
        0, torch.where(segments >= 0, segments, size), bound
    )
    return blocks, coupling[:size]


def _objective(
    method: InfluenceUnlearner,
    kept: KeptRows,
    triples: Triples,
    graph: sp.csr_matrix | None,
    adjacency: torch.Tensor | None,
) -> RestrictedObjective:
    zeros = np.zeros(len(triples), np.float32)
    return RestrictedObjective(
        method.model,
        kept,
        triples.users,
        triples.items,
        zeros,
        triples.weights,
        method.config.train.l2,
        graph,
        adjacency,
        negatives=triples.negatives,
    )


@torch.no_grad()
def _guard_losses(
    method: InfluenceUnlearner,
    kept: KeptRows,
    before: torch.Tensor,
    after: torch.Tensor,
    graph_after: sp.csr_matrix | None,
) -> tuple[float, float]:
    """The mean BPR loss of the validation positives (one seeded negative each, the same for both) with the kept
    rows at ``before`` and at ``after``: the guard judges the objective the update differentiates, on
    held-out positives, a smooth measure where a validation ranking moves by a few hits."""
    cached = getattr(method, "_guard_triples", None)
    if (
        cached is None or cached[0] is not method.valid
    ):  # drawn once per validation table, like the AUC's pattern
        valid = method.valid.positives()
        triples = NegativeSampler(method.train, 1, method.config.train.seed + 1).triples(
            valid.user, valid.item
        )
        device = method.model.user_emb.weight.device
        cached = method._guard_triples = (
            method.valid,
            *(
                torch.as_tensor(a, device=device)
                for a in (triples.users, triples.items, triples.negatives)
            ),
        )
    _, users, items, negatives = cached
    losses = []
    with method._trial(kept, graph_after) as model:
        for values in (before, after):
            kept.scatter(model, values)
            u, i = model.representations()
            r_u = u.index_select(0, users)
            z = (r_u * (i.index_select(0, items) - i.index_select(0, negatives))).sum(-1)
            losses.append(float(-torch.nn.functional.logsigmoid(z).mean()))
    return losses[0], losses[1]


def pairwise_update(
    method: InfluenceUnlearner,
    removed: Interactions,
    remaining: Interactions,
    graph_full: sp.csr_matrix | None,
    graph_after: sp.csr_matrix | None,
    orphaned: Orphans,
) -> dict[str, Any]:
    """The influence update of a BPR model for the removal of ``removed`` (see the module's docstring)."""
    from recunlearn.unlearn.influence.unlearner import damping_scale

    model, config = method.model, method.config
    removed, remaining = (
        removed.positives(),
        remaining.positives(),
    )  # BPR trained on positives alone
    users, items, details = method.kept_rows(removed, method.train, graph_full)
    kept = KeptRows(np.setdiff1d(users, orphaned.users), np.setdiff1d(items, orphaned.items))
    details.update(kept_users=len(kept.users), kept_items=len(kept.items), objective="bpr")
    if kept.size == 0 or not len(removed):
        return {**details, "update": "none (no rows left to update)"}
    timings: dict[str, float] = {}
    start = time.perf_counter()
    sampler = NegativeSampler(method.train, config.negatives_per_positive, config.train.seed)
    n_users, n_layers = model.n_users, getattr(model, "n_layers", 0)
    full_adjacency = getattr(model, "adjacency", None)
    removed_triples = sampler.triples(removed.user, removed.item)
    theta = kept.gather(model)
    if method.spillover and graph_after is not None:
        rows = method.spillover_rows(remaining, kept, graph_full, graph_after)
        spill = sampler.triples(
            remaining.user[rows], remaining.item[rows], per_positive=1
        )  # a difference of two graphs
        after_adjacency = method._after_adjacency(graph_after)
        g = pairwise_gradient(
            _objective(method, kept, removed_triples + spill, graph_full, full_adjacency)
        ) - pairwise_gradient(_objective(method, kept, spill, graph_after, after_adjacency))
        details["spillover_rows"] = int(rows.sum())
    else:
        g = pairwise_gradient(_objective(method, kept, removed_triples, graph_full, full_adjacency))
    orphaned.reset(
        model
    )  # as the pointwise update: the gradient was the last use of their trained rows
    timings["gradient_s"] = time.perf_counter() - start

    start = time.perf_counter()
    summed = expand(
        graph_after,
        kept.nodes(n_users),
        n_layers if graph_after is not None else 0,
        size=n_users + model.n_items,
    )
    per_node = config.hessian_rows_per_node
    rows, weights = hessian_rows(remaining, summed, n_users, per_node, config.train.seed)
    # one negative per sampled row: the rows are already a sample, weighted to stand for all of them
    triples = sampler.triples(remaining.user[rows], remaining.item[rows], weights, per_positive=1)
    triples = triples + sampler.as_negative(kept.items, remaining, per_node or 8)
    after_adjacency = None if graph_after is None else method._after_adjacency(graph_after)
    hessian = _objective(method, kept, triples, graph_after, after_adjacency)
    solver = config.solver
    blocks, coupling = pairwise_blocks(hessian)
    if (
        solver.method != "block"
    ):  # the Gauss-Newton blocks precondition CG, formed by batched products
        blocks = blocks.dense()
        if solver.preconditioner == "diagonal":
            blocks = torch.diagonal(blocks, dim1=-2, dim2=-1).clone()
    scale = max(damping_scale(blocks), 1e-12)
    details["hessian_rows"] = len(triples)
    timings["hessian_setup_s"] = time.perf_counter() - start

    start = time.perf_counter()
    if solver.method == "block":
        damping = solver.damping * scale
        step = block_newton(blocks, g, damping, coupling if solver.coupling else None)
        x, iterations, hvps = step.x, 1, 0
    else:
        preconditioner = (
            None if solver.preconditioner == "none" else (lambda d: block_solver(blocks, d))
        )
        hvp = (
            pairwise_hvp(hessian)
            if solver.hvp == "analytic"
            else hessian_vector_product(hessian, theta)
        )
        result, damping = solve(solver, hvp, g, scale=scale, preconditioner=preconditioner)
        x, iterations, hvps = result.x, result.iterations, result.hvps
        details.update(relative_residual=result.relative_residual, converged=result.converged)
    timings["solve_s"] = time.perf_counter() - start
    details.update(
        solver=solver.method,
        iterations=iterations,
        hvps=hvps,
        damping=damping,
        step_norm=float(x.norm()),
        gradient_norm=float(g.norm()),
    )
    if not math.isfinite(details["step_norm"]):
        raise SolverError(f"the {solver.method} solver returned a non-finite update")
    details["update"] = (
        "applied" if details["step_norm"] > 0 else "none (the solver's step is zero)"
    )
    if (
        config.guard
        and method.valid is not None
        and len(method.valid)
        and details["update"] == "applied"
    ):
        start = time.perf_counter()
        without, with_update = _guard_losses(method, kept, theta, theta + x, graph_after)
        details.update(valid_bpr_loss_update=with_update, valid_bpr_loss_no_update=without)
        if with_update > without * (1 + config.guard_tolerance):
            details["update"] = (
                "rejected: validation BPR loss worse than no update by more than the guard's "
                "tolerance; fell back to no update"
            )
        timings["guard_s"] = time.perf_counter() - start
    kept.scatter(model, theta + x if details["update"] == "applied" else theta)
    details.update({k: round(v, 5) for k, v in timings.items()})
    return details
