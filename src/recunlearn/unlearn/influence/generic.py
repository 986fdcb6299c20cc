"""The influence update of a model whose representations are neither MF's nor LightGCN's.

The closed forms of :mod:`recunlearn.unlearn.influence.objective` assume representations linear in the
embeddings (MF's identity, LightGCN's propagation). For any other model whose score is
differentiable in its embedding tables, the same Newton step is taken by autograd: the removed
rows' gradient and Hessian-vector products of the remaining rows' objective, both through
``model.representations(user_weight, item_weight)`` over the full tables, solved by conjugate
gradients (or the configured HVP solver). Only the kept embedding rows move; the model's other
parameters (biases, layers) keep their trained values. Each product passes over every remaining
row, so it costs about what an epoch of training does, not what the pruned closed forms cost.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from recunlearn.data.interactions import Interactions
from recunlearn.models.base import CFModel
from recunlearn.models.lightgcn import LightGCN
from recunlearn.models.mf import MF
from recunlearn.train.loop import sample_negatives
from recunlearn.unlearn.influence.objective import (
    KeptRows,
    Operator,
    SolverError,
    gradient,
    hessian_vector_product,
)
from recunlearn.unlearn.influence.solvers import solve

if TYPE_CHECKING:
    from recunlearn.unlearn._approximate import Orphans
    from recunlearn.unlearn.influence.unlearner import InfluenceUnlearner


def has_closed_form(model: CFModel) -> bool:
    """Whether the model scores through MF's identity or LightGCN's propagation, which the closed
    forms (and the Hessian blocks of the 'block' solver) are derived for."""
    kind = type(model)
    return kind.representations is MF.representations or (
        kind.representations is LightGCN.representations and kind.propagate is LightGCN.propagate
    )


class TableObjective:
    """sum_r w_r f_r over given rows as a function of the kept rows ``theta``, every other row of
    both tables at its value when the objective is built: the training objective (cross-entropy
    of the labels, or BPR of (user, item, negative) triples) plus ``l2 / 2`` times the squared
    norms of the rows each row touches, as :func:`recunlearn.train.loop.batch_loss` sums them."""

    def __init__(
        self,
        model: CFModel,
        kept: KeptRows,
        users: np.ndarray,
        items: np.ndarray,
        labels: np.ndarray,
        weights: float,
        l2: float,
        negatives: np.ndarray | None = None,
    ):
        device = model.user_emb.weight.device

        def on(array: np.ndarray, dtype: torch.dtype = torch.long) -> torch.Tensor:
            return torch.tensor(np.asarray(array), dtype=dtype, device=device)

        self.model, self.l2, self.weights = model, l2, weights
        self.kept_users, self.kept_items, self.n_kept_users = (
            on(kept.users),
            on(kept.items),
            len(kept.users),
        )
        self.users, self.items, self.labels = on(users), on(items), on(labels, torch.float32)
        self.negatives = None if negatives is None else on(negatives)
        self.user_table = model.user_emb.weight.detach().clone()
        self.item_table = model.item_emb.weight.detach().clone()
        self.theta0 = kept.gather(model)

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        user_weight = self.user_table.index_put((self.kept_users,), theta[: self.n_kept_users])
        item_weight = self.item_table.index_put((self.kept_items,), theta[self.n_kept_users :])
        user_reps, item_reps = self.model.representations(user_weight, item_weight)
        r_u = user_reps.index_select(0, self.users)
        logits = (r_u * item_reps.index_select(0, self.items)).sum(-1)
        ends = [user_weight.index_select(0, self.users), item_weight.index_select(0, self.items)]
        if self.negatives is None:
            loss = F.binary_cross_entropy_with_logits(logits, self.labels, reduction="none")
        else:
            loss = -F.logsigmoid(logits - (r_u * item_reps.index_select(0, self.negatives)).sum(-1))
            ends.append(item_weight.index_select(0, self.negatives))
        if self.l2:
            loss = loss + self.l2 / 2 * sum(end.pow(2).sum(-1) for end in ends)
        return self.weights * loss.sum()


def mean_curvature(hvp: Operator, like: torch.Tensor, probes: int = 4, seed: int = 0) -> float:
    """Hutchinson's estimate of the Hessian's mean diagonal, what relative damping is a fraction of
    (its absolute value: an early-stopped model's Hessian may be indefinite)."""
    generator = torch.Generator().manual_seed(seed)
    total = 0.0
    for _ in range(probes):
        probe = (torch.randint(0, 2, like.shape, generator=generator) * 2 - 1).to(like)
        total += float((probe * hvp(probe)).sum())
    return abs(total) / (probes * like.numel())


def _objectives(
    method: InfluenceUnlearner, kept: KeptRows, removed: Interactions, remaining: Interactions
) -> tuple[TableObjective, Any]:
    """The removed rows' objective now, and a function giving the remaining rows' one when called
    (after the orphans' rows are reset). BPR rows carry ``negatives_per_positive`` seeded negatives
    each, drawn from the items the user has no training positive with, weighted to one positive."""
    model, config = method.model, method.config
    l2 = config.train.l2
    if config.train.loss == "bce":
        return (
            TableObjective(model, kept, removed.user, removed.item, removed.label, 1.0, l2),
            lambda: TableObjective(
                model, kept, remaining.user, remaining.item, remaining.label, 1.0, l2
            ),
        )
    per_positive, n_items = config.negatives_per_positive, method.train.n_items
    positives = method.train.positives()
    keys = torch.unique(
        torch.as_tensor(
            positives.user.astype(np.int64) * n_items + positives.item, dtype=torch.long
        )
    )
    generator = torch.Generator().manual_seed(config.train.seed)

    def triples(table: Interactions) -> TableObjective:
        users, items = (
            np.repeat(table.user.astype(np.int64), per_positive),
            np.repeat(table.item, per_positive),
        )
        negatives = sample_negatives(n_items, torch.as_tensor(users), generator, keys).numpy()
        return TableObjective(
            model,
            kept,
            users,
            items,
            np.ones(len(users), np.float32),
            1 / per_positive,
            l2,
            negatives,
        )

    removed_objective = triples(removed)
    return removed_objective, lambda: triples(remaining)


def generic_update(
    method: InfluenceUnlearner, removed: Interactions, remaining: Interactions, orphaned: Orphans
) -> dict[str, Any]:
    """theta_S += (H + damping I)^-1 g on the kept rows S, by autograd (see the module's docstring)."""
    model, config = method.model, method.config
    if config.train.loss == "bpr":  # BPR trained on the positive rows alone
        removed, remaining = removed.positives(), remaining.positives()
    users, items, details = method.kept_rows(removed, method.train, None)
    kept = KeptRows(np.setdiff1d(users, orphaned.users), np.setdiff1d(items, orphaned.items))
    details.update(kept_users=len(kept.users), kept_items=len(kept.items), derivatives="autograd")
    if kept.size == 0 or not len(removed):
        return {**details, "update": "none (no rows left to update)"}
    removed_objective, remaining_objective = _objectives(method, kept, removed, remaining)
    g = gradient(removed_objective, removed_objective.theta0)
    orphaned.reset(
        model
    )  # the gradient was the last use of their trained rows, as in the closed-form update
    hessian = remaining_objective()
    theta = hessian.theta0
    hvp = hessian_vector_product(hessian, theta)
    solver = (
        config.solver
        if config.solver.method != "block"
        else config.solver.model_copy(update={"method": "cg"})
    )
    evaluate = (
        (lambda x: method._valid_auc_with(kept, theta + x, None))
        if method.valid is not None
        else None
    )
    result, damping = solve(
        solver,
        hvp,
        g,
        scale=max(mean_curvature(hvp, theta, seed=config.train.seed), 1e-12),
        evaluate=evaluate,
    )
    step_norm = float(result.x.norm())
    if not math.isfinite(step_norm):
        raise SolverError(f"the {solver.method} solver returned a non-finite update")
    details.update(
        result.details(solver.method, damping, g),
        update="applied" if step_norm > 0 else "none (the solver's step is zero)",
    )
    if (
        config.guard
        and method.valid is not None
        and len(method.valid)
        and details["update"] == "applied"
    ):
        without, with_update = method._guard_measures(kept, theta, theta + result.x, None)
        metric = config.train.stopping_metric
        details.update(
            {f"valid_{metric}_update": with_update, f"valid_{metric}_no_update": without}
        )
        if with_update < without:
            details["update"] = (
                "rejected: validation measure worse than no update; fell back to no update"
            )
    kept.scatter(model, theta + result.x if details["update"] == "applied" else theta)
    return details
