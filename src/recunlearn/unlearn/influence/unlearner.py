"""The influence-function unlearner (IFRU, IF and SCIF are its configurations): the Newton step of
:meth:`InfluenceUnlearner._update` over the rows it keeps, on top of what every approximate method
does (:class:`~recunlearn.unlearn._approximate.ApproximateUnlearner`)."""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import Field

from recunlearn.data.interactions import Interactions
from recunlearn.models.base import CFModel
from recunlearn.models.graph import (
    expand,
    group_order,
    scipy_to_adjacency,
)
from recunlearn.train.auc import roc_auc
from recunlearn.train.ranking import RankingTask
from recunlearn.unlearn._approximate import ApproximateUnlearner
from recunlearn.unlearn._cf import CFMethodConfig
from recunlearn.unlearn.influence.blocks import (
    LowRankBlocks,
    block_preconditioner,
    block_solver,
    hessian_blocks,
)
from recunlearn.unlearn.influence.generic import generic_update, has_closed_form
from recunlearn.unlearn.influence.objective import (
    KeptRows,
    RestrictedObjective,
    SolverError,
    hessian_vector_product,
)
from recunlearn.unlearn.influence.sampling import hessian_rows, rows_touching, sample_neighbours
from recunlearn.unlearn.influence.solvers import SolverConfig, SolveResult, block_newton, solve


def damping_scale(blocks: torch.Tensor | LowRankBlocks) -> float:
    """What the relative damping is a fraction of: the mean diagonal of the Hessian blocks or, where
    that is not positive (LightGCN's second-order term on an under-trained model), the mean of its
    absolute values, so that the damping never collapses to nothing (and a step to 1e13)."""
    if isinstance(blocks, LowRankBlocks):
        return blocks.diagonal_mean()  # weighted squares plus L2 counts: positive
    diagonal = blocks if blocks.dim() == 2 else torch.diagonal(blocks, dim1=-2, dim2=-1)
    mean = float(diagonal.mean())
    return mean if mean > 0 else float(diagonal.abs().mean())


class InfluenceConfig(CFMethodConfig):
    """Settings of the influence-function methods."""

    solver: SolverConfig = Field(default_factory=SolverConfig)
    """How the Newton system is solved (the per-row Newton step by default; damped, preconditioned CG by choice)."""
    guard: bool = True
    """Keep the update only if validation AUC is not worse than with no update (else fall back to
    no update and say so in the report); needs validation data."""
    hessian_rows_per_node: int | None = Field(8, ge=1)
    """The Hessian is summed over a sample of the remaining rows in which every user and item draws
    this many of its rows (all, if it has fewer), each weighted by 1 / its inclusion probability (an
    unbiased, sub-sampled Hessian; :func:`~recunlearn.unlearn.influence.objective.sample_rows_per_node`), so its
    cost follows the nodes involved, not their degrees. The gradient is never sampled. None sums over
    every row (exact). 8 is where the step's distance to the exact Hessian's step stops paying for
    more rows (docs/ifru.md and `benchmarks/results/ifru/sample_sizes.py` have the measurements)."""
    hessian_neighbours_per_node: int | None = Field(8, ge=1)
    """One-layer LightGCN with the block solver: a kept node's Hessian block sums, besides its own
    rows, the rows of every graph neighbour (a popular item: every user who rated it); it sums
    them over a uniform sample of at most this many neighbours instead, weighted by 1 / their
    inclusion probability (unbiased; :func:`~recunlearn.unlearn.influence.objective.sample_neighbours`), and
    only the drawn nodes draw Hessian rows. None: every neighbour."""

    guard_tolerance: float = Field(1e-3, ge=0)
    """A model trained with BPR: the guard keeps an update whose validation BPR loss is at most this
    fraction above no update's. Forgetting a positive may cost held-out fit a little (the retrained
    model's loss is not the original's); a step that overshoots costs far more."""
    negatives_per_positive: int = Field(4, ge=1)
    """A model trained with BPR: negatives drawn per positive row to estimate the expected pairwise
    loss the update differentiates (see :mod:`recunlearn.unlearn.influence.objective.pairwise`)."""


class InfluenceUnlearner(ApproximateUnlearner):
    """One Newton step on the kept rows: theta_S += (H + damping I)^-1 g.

    ``H`` is the Hessian of the summed training objective on the remaining data (graph without the
    deleted edges) with respect to the kept rows; ``g`` the gradient of the removed rows' summed
    objective, plus for ``spillover`` the change of the remaining rows' gradient when the graph
    loses the deleted edges. Subclasses choose the kept rows and whether to add spillover.
    """

    Config = InfluenceConfig
    spillover: ClassVar[bool] = False

    def kept_rows(
        self, removed: Interactions, before: Interactions, graph_full: sp.csr_matrix | None
    ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """User and item rows to update (before orphans are taken out), and details for the report."""
        raise NotImplementedError

    def _update(self, removed, remaining, graph_full, graph_after, orphaned):
        if not has_closed_form(self.model):  # a user's model: autograd through its representations
            return generic_update(self, removed, remaining, orphaned)
        if self.config.train.loss == "bpr":
            from recunlearn.unlearn.influence.pairwise import pairwise_update

            return pairwise_update(self, removed, remaining, graph_full, graph_after, orphaned)
        model, l2 = self.model, self.config.train.l2
        users, items, details = self.kept_rows(removed, self.train, graph_full)
        kept = KeptRows(np.setdiff1d(users, orphaned.users), np.setdiff1d(items, orphaned.items))
        details.update(kept_users=len(kept.users), kept_items=len(kept.items))
        if kept.size == 0:
            return {**details, "update": "none (no rows left to update)"}
        timings: dict[str, float] = {}
        start = time.perf_counter()
        if self.spillover and graph_after is not None:
            g, details["spillover_rows"] = self._gradient_with_spillover(
                kept, removed, remaining, graph_full, graph_after
            )
        else:
            g = RestrictedObjective(
                model,
                kept,
                removed.user,
                removed.item,
                removed.label,
                1.0,
                l2,
                graph_full,
                getattr(model, "adjacency", None),
            ).analytic_gradient()
        # The removed rows' gradient was the last use of the orphans' trained rows (their influence);
        # the Hessian (remaining rows: none of theirs) does not read them, and the solve's and the
        # guard's validation AUCs must judge the model that is kept, orphans reset.
        orphaned.reset(model)
        n_nodes, n_layers = model.n_users, getattr(model, "n_layers", 0)
        timings["gradient_s"] = time.perf_counter() - start

        start = time.perf_counter()
        solver = self.config.solver
        neighbours = None
        if (
            solver.method == "block"
            and graph_after is not None
            and n_layers == 1
            and self.config.hessian_neighbours_per_node is not None
        ):
            neighbours = sample_neighbours(
                graph_after,
                kept.nodes(n_nodes),
                self.config.hessian_neighbours_per_node,
                seed=self.config.train.seed,
            )
            summed = neighbours.nodes  # the nodes whose row sums enter the blocks
        else:  # the nodes whose loss (on the graph after deletion) depends on a kept row
            summed = expand(
                graph_after,
                kept.nodes(n_nodes),
                n_layers if graph_after is not None else 0,
                size=n_nodes + model.n_items,
            )
        rows, weights = hessian_rows(
            remaining, summed, n_nodes, self.config.hessian_rows_per_node, self.config.train.seed
        )
        hessian = RestrictedObjective(
            model,
            kept,
            remaining.user[rows],
            remaining.item[rows],
            remaining.label[rows],
            weights,
            l2,
            graph_after,
            None if graph_after is None else self._after_adjacency(graph_after),
        )
        if solver.method == "block":
            blocks, coupling = hessian_blocks(hessian, low_rank=True, neighbours=neighbours)
        else:
            hvp = (
                hessian.analytic_hvp()
                if solver.hvp == "analytic"
                else hessian_vector_product(hessian, hessian.theta0)
            )
            blocks = block_preconditioner(hessian, diagonal=solver.preconditioner != "block")
        scale = max(damping_scale(blocks), 1e-12)
        details["hessian_rows"] = len(rows)
        timings["hessian_setup_s"] = time.perf_counter() - start

        start = time.perf_counter()
        theta = hessian.theta0
        guard = self.config.guard and self.valid is not None and len(self.valid)
        if solver.method == "block":
            damping = solver.damping * scale
            step = block_newton(
                blocks, g, damping, coupling if solver.coupling else None, overwrite_blocks=True
            )
            result = SolveResult(step.x, 1, hvps=0)
            details["raised_blocks"] = step.raised_blocks
        else:
            evaluate = (
                (lambda x: self._valid_auc_with(kept, theta + x, graph_after))
                if self.valid is not None
                else None
            )
            preconditioner = (
                None if solver.preconditioner == "none" else (lambda d: block_solver(blocks, d))
            )
            result, damping = solve(
                solver, hvp, g, scale=scale, preconditioner=preconditioner, evaluate=evaluate
            )
        timings["solve_s"] = time.perf_counter() - start
        details.update(result.details(solver.method, damping, g))
        if not math.isfinite(details["step_norm"]):
            raise SolverError(f"the {solver.method} solver returned a non-finite update")

        details["update"] = (
            "applied" if details["step_norm"] > 0 else "none (the solver's step is zero)"
        )
        if guard and details["update"] == "applied":
            start = time.perf_counter()
            without, with_update = self._guard_measures(kept, theta, theta + result.x, graph_after)
            metric = self.config.train.stopping_metric
            details.update(
                {f"valid_{metric}_update": with_update, f"valid_{metric}_no_update": without}
            )
            if with_update < without:
                details["update"] = (
                    f"rejected: validation {'AUC' if metric == 'auc' else metric} worse than no "
                    "update; fell back to no update"
                )
            timings["guard_s"] = time.perf_counter() - start
        kept.scatter(model, theta + result.x if details["update"] == "applied" else theta)
        details.update({k: round(v, 5) for k, v in timings.items()})
        return details

    def _gradient_with_spillover(
        self,
        kept: KeptRows,
        removed: Interactions,
        remaining: Interactions,
        graph_full: sp.csr_matrix,
        graph_after: sp.csr_matrix,
    ) -> tuple[torch.Tensor, int]:
        """The removed rows R's gradient, grad sum_R f(G_full) (L2 terms included), plus the spillover
        grad[ sum_C f(G_full) - sum_C f(G_after) ] over the remaining rows C whose score the graph
        change moves and whose loss depends on a kept row (an end within n_layers hops of one; any
        other row's gradient with respect to the kept rows is zero); and the size of C.

        One objective over R and C on the full graph, less its twin on the graph after with R
        weighted 0: one pattern of rows and two gradients (C's L2 terms cancel)."""
        model = self.model
        rows = self.spillover_rows(remaining, kept, graph_full, graph_after)
        both = [
            np.concatenate([getattr(removed, k), getattr(remaining, k)[rows]])
            for k in ("user", "item", "label")
        ]
        objective = RestrictedObjective(
            model, kept, *both, 1.0, self.config.train.l2, graph_full, model.adjacency
        )
        without_removed = np.concatenate(
            [np.zeros(len(removed), np.float32), np.ones(len(both[0]) - len(removed), np.float32)]
        )
        after = objective.on_graph(
            graph_after, weights=without_removed, adjacency=self._after_adjacency(graph_after)
        )
        return objective.analytic_gradient() - after.analytic_gradient(), len(both[0]) - len(
            removed
        )

    def spillover_rows(
        self,
        remaining: Interactions,
        kept: KeptRows,
        graph_full: sp.csr_matrix,
        graph_after: sp.csr_matrix,
    ) -> np.ndarray:
        """Mask of the remaining rows C of the spillover: their score moves with the graph change
        (an end within n_layers hops of a node whose degree changed by more than the threshold) and
        their loss depends on a kept row (an end within n_layers hops of one)."""
        degree_full, degree_after = np.diff(graph_full.indptr), np.diff(graph_after.indptr)
        ratio = (degree_full - degree_after) / np.maximum(degree_full, 1)
        changed = np.flatnonzero(ratio > self.spillover_threshold())
        n_users, n_layers = self.model.n_users, getattr(self.model, "n_layers", 0)
        moved = expand(graph_full, changed, n_layers)
        depends = expand(graph_full, kept.nodes(n_users), n_layers)
        return rows_touching(remaining, moved, n_users) & rows_touching(remaining, depends, n_users)

    def spillover_threshold(self) -> float:
        """Nodes whose degree falls by at most this fraction count as unchanged (0: exact)."""
        return 0.0

    @contextlib.contextmanager
    def _trial(self, kept: KeptRows, graph_after: sp.csr_matrix | None):
        """Inside: the model scores with the graph without the deleted edges and its kept rows may be
        set freely; on leaving, both are as they were."""
        model = self.model
        saved_rows, saved_graph = kept.gather(model), getattr(model, "adjacency", None)
        if graph_after is not None:
            model.adjacency = self._after_adjacency(graph_after)
        try:
            yield model
        finally:
            kept.scatter(model, saved_rows)
            if graph_after is not None:
                model.adjacency = saved_graph

    @torch.no_grad()
    def _guard_measures(
        self,
        kept: KeptRows,
        before: torch.Tensor,
        after: torch.Tensor,
        graph_after: sp.csr_matrix | None,
    ) -> tuple[float, float]:
        """The validation measure early stopping watches, with the kept rows at ``before`` and at
        ``after`` (graph without the deleted edges)."""
        with self._trial(kept, graph_after) as model:
            kept.scatter(model, before)
            without = self._current_valid_measure(model)
            kept.scatter(model, after)
            return without, self._current_valid_measure(model)

    @torch.no_grad()
    def _valid_auc_with(
        self, kept: KeptRows, values: torch.Tensor, graph_after: sp.csr_matrix | None
    ) -> float:
        """Validation AUC with the kept rows set to ``values`` (and the graph without the deleted edges)."""
        with self._trial(kept, graph_after) as model:
            kept.scatter(model, values)
            return self._current_valid_measure(model)

    def _current_valid_measure(self, model: CFModel) -> float:
        """Validation AUC, or the ranking measure early stopping watches (its task built once per
        validation table, as the AUC's pattern)."""
        train = self.config.train
        if train.stopping_metric == "auc":
            return self._current_valid_auc(model)
        cached = getattr(self, "_valid_ranking", None)
        if cached is None or cached[0] is not self.valid or cached[1] is not self.train:
            cached = self._valid_ranking = (
                self.valid,
                self.train,
                RankingTask(self.train, self.valid, train.valid_k),
            )
        device = model.user_emb.weight.device
        scores = cached[2].evaluate(
            lambda users: model.score_all(torch.as_tensor(users, device=device))
        )
        return scores[f"{train.stopping_metric}@{train.valid_k}"]

    def _current_valid_auc(self, model: CFModel) -> float:
        """What :func:`~recunlearn.train.loop.valid_auc` gives, with the logits of the validation pairs
        taken from one sampled product over a users x items pattern of them, built once per validation
        table (a forget that drops validation rows makes a new one), rather than gathering a copy of
        both ends' rows."""
        cached, device = getattr(self, "_valid_pattern", None), model.user_emb.weight.device
        if cached is None or cached[0] is not self.valid or cached[1].device != device:
            valid = self.valid
            order = group_order(valid.user, model.n_users)
            crow = np.concatenate(
                [[0], np.cumsum(np.bincount(valid.user, minlength=model.n_users))]
            )
            pairs = sp.csr_matrix(
                (np.ones(len(valid), np.float32), valid.item[order], crow),
                shape=(model.n_users, model.n_items),
            )
            cached = self._valid_pattern = (
                valid,
                scipy_to_adjacency(pairs, device),
                valid.label[order],
            )
        _, pattern, labels = cached
        users, items = model.representations()
        logits = torch.sparse.sampled_addmm(pattern, users, items.T, beta=0.0).values()
        return roc_auc(labels, torch.sigmoid(logits).cpu().numpy())
