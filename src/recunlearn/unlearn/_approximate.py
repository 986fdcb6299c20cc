"""What the approximate methods on one MF/LightGCN model share (IFRU, IF, SCIF, fine-tuning, NegGrad).

One trained model is updated in place rather than retrained. Whatever the update, ``forget``
also does what retraining would do exactly and cheaply: the graph LightGCN scores with loses the
deleted edges (renormalised incrementally, equal to rebuilding it from the remaining data), and
the rows of users/items left with no training data go back to their initial values (rows that
retraining would never touch). Each method says how it updates in :meth:`ApproximateUnlearner._update`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from recunlearn.data.interactions import Interactions
from recunlearn.models.base import CFModel
from recunlearn.models.graph import (
    adjacency_to_scipy,
    remove_edges,
    scipy_to_adjacency,
)
from recunlearn.train.loop import fit_model
from recunlearn.unlearn._cf import CFMethodConfig, SingleModelMixin, describe_fit
from recunlearn.unlearn.base import CFUnlearner, PartChange, UnlearningReport


def orphans(removed: np.ndarray, remaining: np.ndarray, size: int) -> np.ndarray:
    """The nodes among ``removed`` with no row in ``remaining`` (sorted): a count, not a set difference."""
    left = np.bincount(remaining, minlength=size)
    candidates = np.unique(removed)
    return candidates[left[candidates] == 0]


def changed_rows(before: torch.Tensor, after: torch.Tensor) -> int:
    """How many rows of ``after`` differ from ``before`` in some entry (nested counts, which the CPU
    runs faster than ``any(1)``)."""
    return int(torch.count_nonzero(torch.count_nonzero(after.detach() != before, dim=1)))


def clone_model(model: CFModel) -> CFModel:
    """A deep copy of a model; LightGCN's graph (sparse CSR, which deepcopy refuses) is shared,
    as forgetting replaces it rather than changing it in place."""
    adjacency = getattr(model, "adjacency", None)
    model.adjacency = None
    try:
        twin = copy.deepcopy(model)
    finally:
        model.adjacency = adjacency
    twin.adjacency = adjacency
    return twin


def initial_rows(
    config: CFMethodConfig, n_users: int, n_items: int, users: np.ndarray, items: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """The values training from scratch starts the given rows at (same seed, same draw order)."""
    generator = torch.Generator().manual_seed(config.train.seed)
    fresh = config.model.build(n_users, n_items, generator)
    return (
        fresh.user_emb.weight.detach()[torch.as_tensor(users)],
        fresh.item_emb.weight.detach()[torch.as_tensor(items)],
    )


@dataclass(frozen=True)
class Orphans:
    """The users and items a removal leaves with no training rows, and the values training from
    scratch starts their rows at (drawn once: influence methods reset them once their gradient is
    taken and ``forget`` again at the end, which must then cost nothing)."""

    users: np.ndarray
    items: np.ndarray
    user_rows: torch.Tensor
    item_rows: torch.Tensor

    @classmethod
    def of(cls, config: CFMethodConfig, removed: Interactions, remaining: Interactions) -> Orphans:
        users = orphans(removed.user, remaining.user, remaining.n_users)
        items = orphans(removed.item, remaining.item, remaining.n_items)
        if not len(users) and not len(items):
            return cls(users, items, torch.zeros(0), torch.zeros(0))
        return cls(
            users, items, *initial_rows(config, remaining.n_users, remaining.n_items, users, items)
        )

    def __len__(self) -> int:
        return len(self.users) + len(self.items)

    @torch.no_grad()
    def reset(self, model: CFModel) -> None:
        """Put the orphans' rows of ``model`` back at their initial values."""
        if len(self):
            device = model.user_emb.weight.device
            model.user_emb.weight[torch.as_tensor(self.users, device=device)] = self.user_rows.to(
                device
            )
            model.item_emb.weight[torch.as_tensor(self.items, device=device)] = self.item_rows.to(
                device
            )


class ApproximateUnlearner(SingleModelMixin, CFUnlearner):
    """One model trained once; ``forget`` changes it in place (see :meth:`_update`)."""

    exact = False
    Config = CFMethodConfig

    def _fit(self) -> None:
        result = fit_model(
            self.config.model, self.train, self.valid, self.config.train, desc=self.name
        )
        self.model, self.fit_info = result.model, describe_fit(result)

    @classmethod
    def adopt(
        cls, fitted: CFUnlearner, config: Any = None, **overrides: Any
    ) -> ApproximateUnlearner:
        """A new method starting from another one's trained model (a copy), without training again.

        Benchmarks use it to give every approximate method the same original model; ``fitted``
        must hold one model (``.model``) trained with the same model and training settings.
        """
        if not hasattr(fitted, "model") or fitted.train is None:
            raise TypeError(f"{type(fitted).__name__} holds no single fitted model to adopt")
        values = config.model_dump() if hasattr(config, "model_dump") else dict(config or {})
        values.setdefault("model", fitted.config.model.model_dump())
        values.setdefault("train", fitted.config.train.model_dump())
        method = cls(values, **overrides)
        if method.config.model != fitted.config.model or method.config.train != fitted.config.train:
            raise ValueError(
                "adopt() needs the same model and training settings as the fitted method"
            )
        method.train, method.valid, method.fit_seconds = (
            fitted.train,
            fitted.valid,
            fitted.fit_seconds,
        )
        method.model, method.fit_info = (
            clone_model(fitted.model),
            dict(getattr(fitted, "fit_info", {})),
        )
        method._forgotten = set(
            fitted._forgotten
        )  # a pair the original forgot is a no-op here too, not unknown
        return method

    # forgetting -----------------------------------------------------------------------------------------
    def _forget(self, mask: np.ndarray) -> UnlearningReport:
        before = self.train
        removed, remaining = before.take(mask), before.drop(mask)
        model = self.model
        start = (model.user_emb.weight.detach().clone(), model.item_emb.weight.detach().clone())
        adjacency = getattr(model, "adjacency", None)
        graph_full = graph_after = None
        if adjacency is not None:
            graph_full = adjacency_to_scipy(adjacency)
            pos = removed.label > 0
            graph_after = remove_edges(
                graph_full, model.n_users, removed.user[pos], removed.item[pos]
            )
        orphaned = Orphans.of(self.config, removed, remaining)
        try:
            details = self._update(removed, remaining, graph_full, graph_after, orphaned)
        except (
            BaseException
        ):  # the model as it was (an influence update resets the orphans before its solve)
            with torch.no_grad():
                model.user_emb.weight.copy_(start[0])
                model.item_emb.weight.copy_(start[1])
            if adjacency is not None:
                model.adjacency = adjacency
            raise
        orphaned.reset(model)
        if graph_after is not None:
            model.adjacency = self._after_adjacency(graph_after)
        self._after_cache = None
        self.train = remaining
        details["reset_rows"] = len(orphaned)
        changed = changed_rows(start[0], model.user_emb.weight) + changed_rows(
            start[1], model.item_emb.weight
        )
        part = PartChange(
            part="model",
            action="updated",
            data_hash_before=before.content_hash(),
            data_hash_after=remaining.content_hash(),
            rows_before=len(before),
            rows_after=len(remaining),
            parameter_rows=changed,
        )
        return self._report([part], **details)

    def _after_adjacency(self, graph_after: sp.csr_matrix) -> torch.Tensor:
        """The graph without the deleted edges as the model's tensor, converted once per ``forget``."""
        cached = getattr(self, "_after_cache", None)
        if cached is None or cached[0] is not graph_after:
            self._after_cache = (
                graph_after,
                scipy_to_adjacency(graph_after, self.model.user_emb.weight.device),
            )
        return self._after_cache[1]

    def _update(
        self,
        removed: Interactions,
        remaining: Interactions,
        graph_full: sp.csr_matrix | None,
        graph_after: sp.csr_matrix | None,
        orphaned: Orphans,
    ) -> dict[str, Any]:
        """Change the model's parameters for the removal; return report details. ``forget`` resets
        the orphans' rows afterwards (an update may reset them sooner, once it is done with their
        trained values)."""
        raise NotImplementedError
