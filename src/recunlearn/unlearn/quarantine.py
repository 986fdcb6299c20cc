"""Instant deletion by quarantine, then an exact repair.

A partition method's prediction combines parts (shard models, LoRA adapters). ``quarantine(request)``
takes the request's rows out of the training data and drops the parts whose shards held them from
the combination at once, retraining nothing: the served model is then a function of remaining data
only, so the result is exact. The combiner does the rest: averaging renormalises over the remaining
parts; APA's attention (refitted, as after a forget) gives the quarantined adapters zero weight and
renormalises; an aggregator fitted on every shard's output
(RecEraser's attention, the weighted mean's cached errors) falls back to the plain average of the
remaining shards until the repair refits it. The quarantined parts' weights are discarded, so a saved
quarantined model holds nothing of them, and it records the pending requests by id only.

A request that would set aside the last parts still served makes a sharded collaborative model serve
the most popular items of the remaining rows until the repair (``quarantine_fallback = "popularity"``,
the default: still a function of remaining data only, so the deletion still takes effect at once and
exactly); with ``"none"``, and for the LLM methods, such a quarantine is refused.

``repair()`` retrains every quarantined part once for all pending requests, refits what depends on
them and restores them: the model is then bitwise what ``forget_many`` of the pending requests gives on the model as
it was before the first quarantine (CPU, one thread).

A single model (``retrain``) has no part to set aside: its quarantine applies an approximate method
(IFRU by default), reported as approximate, and its repair is the exact retraining, due by a
:class:`RepairPolicy`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from datetime import time as time_of_day
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from recunlearn.data.deletion import DeletionRequest
from recunlearn.errors import ConfigError, RecUnlearnError
from recunlearn.unlearn.aggregate import AverageAggregator, AverageConfig, build_aggregator
from recunlearn.unlearn.aggregate.popularity import PopularityFallback
from recunlearn.unlearn.base import PartChange, UnlearningReport, get_method, restored_on_error


class RepairPolicy(BaseModel):
    """When pending requests are repaired (retrained exactly)."""

    model_config = ConfigDict(extra="forbid")
    when: Literal["now", "after", "at"] = "now"
    """'now': as soon as anything is pending; 'after': once ``after_requests`` are pending; 'at':
    daily at ``at`` (UTC), for what was quarantined before it."""
    after_requests: int = Field(1, ge=1)
    """Pending requests that make a repair due under 'after'."""
    at: time_of_day = time_of_day(3, 0)
    """Time of day (UTC) of the repair under 'at'."""

    def due(self, pending: int, since: float | None, now: float | None = None) -> bool:
        """Whether ``pending`` requests, the oldest quarantined at ``since`` (epoch seconds), are due."""
        if not pending:
            return False
        if self.when == "now":
            return True
        if self.when == "after":
            return pending >= self.after_requests
        now_dt = datetime.fromtimestamp(time.time() if now is None else now, timezone.utc)
        since_dt = datetime.fromtimestamp(since if since is not None else 0.0, timezone.utc)
        last = datetime.combine(now_dt.date(), self.at, timezone.utc)
        if last > now_dt:
            last -= timedelta(days=1)
        return since_dt <= last


class _Quarantine:
    """What every quarantining method shares: the pending requests, the policy, the saved record.

    State: ``_pending`` (ids of the requests quarantined and not repaired), ``_quarantined`` (part indices),
    ``_pending_since`` (when the oldest pending request was quarantined), ``_validation_dropped``
    (whether a pending request removed validation rows: what was fitted on them is refitted)."""

    @property
    def pending(self) -> list[str]:
        """Ids of the requests quarantined and not yet repaired, in arrival order. Only the ids: the
        repair retrains the set-aside parts on the rows left, so a saved quarantined model keeps no
        id the requests named (their rows are already gone from its data)."""
        return list(getattr(self, "_pending", []))

    @property
    def quarantined_parts(self) -> list[str]:
        """Names of the parts set aside until the repair (as the reports name parts)."""
        return [self._part_name(k) for k in sorted(getattr(self, "_quarantined", set()))]

    def repair_due(self, now: float | None = None) -> bool:
        """Whether the configured :class:`RepairPolicy` says the pending requests are due."""
        policy = getattr(self.config, "repair", None) or RepairPolicy()
        return policy.due(len(self.pending), getattr(self, "_pending_since", None), now)

    def _part_name(self, k: int) -> str:
        return f"part-{k}"

    def _clear_quarantine(self) -> None:
        self._pending: list[str] = []
        self._quarantined: set[int] = set()
        self._pending_since: float | None = None
        self._validation_dropped = False

    def _note_pending(self, request: DeletionRequest, validation_dropped: bool) -> None:
        if not self.pending:
            self._clear_quarantine()
            self._pending_since = time.time()
        self._pending.append(request.request_id)
        self._validation_dropped = self._validation_dropped or validation_dropped

    def _quarantine_record(self) -> dict[str, Any] | None:
        """What a save records so that ``load`` + ``repair`` resume (None: nothing pending)."""
        if not self.pending:
            return None
        return {
            "pending": list(self._pending),
            "parts": sorted(self._quarantined),
            "since": self._pending_since,
            "validation_dropped": self._validation_dropped,
        }

    def _restore_quarantine(self, record: dict[str, Any] | None) -> None:
        self._clear_quarantine()
        if record:
            self._pending = list(record["pending"])
            self._quarantined = set(record["parts"])
            self._pending_since = record["since"]
            self._validation_dropped = record["validation_dropped"]
            self._after_quarantine_restored()

    def _after_quarantine_restored(self) -> None:
        """Put the loaded model in its quarantined serving state."""

    def _request_masks(self, request: DeletionRequest) -> tuple[np.ndarray, np.ndarray]:
        """The training and validation rows a quarantined request names (as ``forget`` checks it)."""
        self._check_fitted()
        if not isinstance(request, DeletionRequest):
            raise RecUnlearnError(f"expected a DeletionRequest, got {type(request).__name__}")
        return self._masks_of(request)

    def _repaired(self, parts: list[PartChange], start: float, **details: Any) -> UnlearningReport:
        """The repair's report (named after the last pending request), the quarantine cleared."""
        requests = list(self._pending)
        self._clear_quarantine()
        return UnlearningReport(
            request_id=requests[-1],
            method=self.name,
            exact=True,
            removed_rows=0,
            phase="repair",
            parts=parts,
            seconds=time.perf_counter() - start,
            details={"requests": requests, **details},
        )

    def _noop(self, request: DeletionRequest, start: float) -> UnlearningReport:
        return UnlearningReport(
            request_id=request.request_id,
            method=self.name,
            exact=self.exact,
            removed_rows=0,
            noop=True,
            phase="quarantine",
            quarantined_parts=self.quarantined_parts,
            seconds=time.perf_counter() - start,
        )


class PartQuarantine(_Quarantine):
    """Quarantine for methods whose prediction combines parts (shards, adapters): ``models`` holds one
    model per part, None for an empty or quarantined one."""

    def quarantine(self, request: DeletionRequest) -> UnlearningReport:
        """Remove the request's rows and stop using the parts that held them, at once; exact."""
        start = time.perf_counter()
        mask, valid_mask = self._request_masks(request)
        if not mask.any() and not valid_mask.any():
            return self._noop(request, start)
        if mask.all():
            raise RecUnlearnError(
                f"{self.name}: a request may not remove every training row; fit a new model instead"
            )
        self._check_validation_left(valid_mask)
        quarantined = set(getattr(self, "_quarantined", set()))
        new = sorted(set(np.unique(self.assignment[mask]).tolist()) - quarantined)
        parts = self.models
        every_part = all(m is None or k in quarantined or k in new for k, m in enumerate(parts))
        if every_part and not self._serves_without_parts():
            raise RecUnlearnError(
                f"{self.name}: every part holds rows of this request or of a pending one; "
                "quarantine would leave nothing to serve from: call repair(), or forget() instead"
            )
        removed = self.train.take(mask)
        removed_valid = self.valid.take(valid_mask) if valid_mask.any() else None
        with restored_on_error(
            self,
            (*self._validation_state, "train", "assignment", "models", *self._aside_state),
            deep=self._aside_deep,
            after=self._reload_parts,
        ):
            if valid_mask.any():
                self._drop_validation(valid_mask)
            self.train = self.train.drop(mask)
            self.assignment = self.assignment[~mask]
            self._set_aside(new, bool(valid_mask.any()))
        self._note_pending(request, bool(valid_mask.any()))
        self._quarantined |= set(new)
        report = UnlearningReport(
            request_id=request.request_id,
            method=self.name,
            exact=True,
            removed_rows=int(mask.sum()),
            removed_valid_rows=int(valid_mask.sum()),
            phase="quarantine",
            quarantined_parts=self.quarantined_parts,
            parts=[
                PartChange(
                    part=self._part_name(k),
                    action="quarantined" if k in self._quarantined else "unchanged",
                )
                for k in range(len(parts))
            ],
            details={
                "newly_quarantined": [self._part_name(k) for k in new],
                "serving": "popularity" if every_part else "parts",
            },
        )
        self._record_removed(report, removed, removed_valid)
        report.seconds = time.perf_counter() - start
        return report

    def repair(self) -> UnlearningReport | None:
        """Retrain every quarantined part once, refit what depends on them, serve them again: the
        model is then what ``forget_many`` of the pending requests gives. None when nothing is pending."""
        if not self.pending:
            return None
        start = time.perf_counter()
        parts = sorted(self._quarantined)
        with restored_on_error(self, ("_quarantined",)):
            self._quarantined = set()
            self._retrain_parts(parts)
        return self._repaired(
            [
                PartChange(
                    part=self._part_name(k),
                    action="retrained" if k in parts else "unchanged",
                    data_hash_after=self._part_hash(k),
                )
                for k in range(len(self.models))
            ],
            start,
            retrained=[self._part_name(k) for k in parts],
        )

    # family hooks ------------------------------------------------------------------------------------
    _aside_state: ClassVar[tuple[str, ...]] = ()
    """Attributes :meth:`_set_aside` rebinds: put back if the quarantine fails."""
    _aside_deep: ClassVar[tuple[str, ...]] = ()
    """Attributes :meth:`_set_aside` changes in place: deep-copied first, put back if it fails."""

    def _reload_parts(self) -> None:
        """After a failed quarantine: put back what lives outside the attributes."""
        return None

    def _serves_without_parts(self) -> bool:
        """Whether something exact serves once every part is set aside (else such a quarantine is
        refused)."""
        return False

    def _set_aside(self, parts: Sequence[int], validation_dropped: bool) -> None:
        """Stop serving ``parts`` and drop their weights (``validation_dropped``: the request also
        removed validation rows, which what was fitted on them must stop using)."""
        raise NotImplementedError

    def _retrain_parts(self, parts: Sequence[int]) -> None:
        """Retrain ``parts`` on their current rows and refit what depends on them (as ``forget``)."""
        raise NotImplementedError

    def _part_hash(self, k: int) -> str | None:
        """The content hash of the rows part ``k`` holds (what its model was trained on)."""
        return self.shard_info[k].get("data_hash")


def fallback_average(config: Any) -> AverageAggregator:
    """The plain average a learned aggregator falls back to while shards are quarantined (over
    logits for shards trained with BPR, as a sharded method's default average)."""
    over = "logits" if config.train.loss == "bpr" else "probabilities"
    return AverageAggregator(AverageConfig(over=over))


class ShardQuarantine(PartQuarantine):
    """Quarantine for SISA, RecEraser and GraphEraser (``ShardedUnlearner``)."""

    _aside_state = ("aggregator", "_aggregator_held")

    def _part_name(self, k: int) -> str:
        return f"shard-{k}"

    def _serves_without_parts(self) -> bool:
        return self.config.quarantine_fallback == "popularity"

    def _set_aside(self, parts: Sequence[int], validation_dropped: bool) -> None:
        self.models = list(self.models)
        for k in parts:
            self.models[k] = None
        # an aggregator fitted on a part set aside, or on dropped validation rows, waits for the repair
        needed = parts or (validation_dropped and self.aggregator.uses_validation)
        if needed and not isinstance(self.aggregator, (AverageAggregator, PopularityFallback)):
            self._aggregator_held = self.aggregator
            self.aggregator = fallback_average(self.config)
        self._serve_popularity_if_nothing_left()

    def _after_quarantine_restored(self) -> None:
        # where the quarantine held the aggregator (as in _set_aside), its state was not saved:
        # serve the fallback, and the repair fits it afresh
        held = self._quarantined or (self._validation_dropped and self.aggregator.uses_validation)
        if held and not isinstance(self.aggregator, AverageAggregator):
            self._aggregator_held = None
            self.aggregator = fallback_average(self.config)
        self._serve_popularity_if_nothing_left()

    def _serve_popularity_if_nothing_left(self) -> None:
        """With every shard set aside, the most popular of the remaining rows' items (refitted after
        each quarantine: the rows change)."""
        if all(m is None for m in self.models):
            self.aggregator = PopularityFallback()
            self.aggregator.fit(self.models, self.train, self.valid, [], self.assignment)

    def _retrain_parts(self, parts: Sequence[int]) -> None:
        # the held aggregator is refitted in place
        with restored_on_error(
            self,
            ("models", "shard_info", "aggregator", "aggregator_info"),
            deep=("_aggregator_held",),
        ):
            self._train_shards(parts)
            # stateless: built again, in place of the popularity list if that was served
            if self.config.aggregator.kind == "average":
                self.aggregator = build_aggregator(self.config.aggregator)
                return
            held = getattr(self, "_aggregator_held", None)
            aggregator = held if held is not None else build_aggregator(self.config.aggregator)
            every = held is None or (self._validation_dropped and aggregator.uses_validation)
            changed = range(self.config.n_shards) if every else parts
            self.aggregator_info = aggregator.fit(
                self.models, self.train, self.valid, changed, self.assignment
            )
            self.aggregator, self._aggregator_held = aggregator, None


class AdapterQuarantine(PartQuarantine):
    """Quarantine for APA and the ``llm-*`` shard methods (``LLMUnlearner``): a quarantined adapter
    is absent, and the combiner, refitted, skips it (:mod:`recunlearn.unlearn.combine`)."""

    _aside_deep = ("combiner",)  # refitted in place

    def _part_name(self, k: int) -> str:
        return f"adapter-{k}"

    def _set_aside(self, parts: Sequence[int], validation_dropped: bool) -> None:
        from recunlearn.models.llm.lora import load_adapter

        self.models = list(self.models)
        self.valid_logits = self.valid_logits.copy()
        for k in parts:
            self.models[k] = None
            self.valid_logits[k] = 0.0
            load_adapter(self.scorer, k, None)
        self._refit_combiner(parts)

    def _reload_parts(self) -> None:
        from recunlearn.models.llm.lora import load_adapter

        for k, adapter in enumerate(self.models):  # the mixture holds the adapters' weights
            load_adapter(self.scorer, k, adapter)

    def _retrain_parts(self, parts: Sequence[int]) -> None:
        # the adapters, their cached validation logits and the combiner fitted on them change together:
        # a failed repair puts all of them back, with the mixture's copies of the adapters
        with restored_on_error(
            self,
            ("models", "shard_info", "valid_logits"),
            deep=self._combiner_state,
            after=self._reload_parts,
        ):
            if parts:
                self._train_shards(parts)
            self._refit_combiner(parts)  # as forget does


class SingleModelQuarantine(_Quarantine):
    """Quarantine for one model retrained exactly (``retrain``): an approximate method's update at
    once (reported approximate), the exact retraining at the repair."""

    def quarantine(self, request: DeletionRequest) -> UnlearningReport:
        """Apply the configured approximate method (``quarantine_method``) to the served model."""
        start = time.perf_counter()
        mask, valid_mask = self._request_masks(request)
        if not mask.any() and not valid_mask.any():
            return self._noop(request, start)
        approximate = self._approximate_method()
        report = approximate.forget(request)
        self.model, self.train, self.valid = approximate.model, approximate.train, approximate.valid
        self._forgotten = approximate._forgotten
        self._note_pending(request, bool(valid_mask.any()))
        report.method = self.name
        report.phase = "quarantine"
        report.details["approximate_method"] = approximate.name
        report.seconds = time.perf_counter() - start
        return report

    def _approximate_method(self):
        from recunlearn.unlearn._approximate import ApproximateUnlearner

        cls = get_method(self.config.quarantine_method)
        if not issubclass(cls, ApproximateUnlearner):
            raise ConfigError(
                f"quarantine_method {self.config.quarantine_method!r} is not an approximate method "
                "('ifru', 'if', 'scif', 'finetune' or 'neggrad')"
            )
        values = {
            "model": self.config.model.model_dump(),
            "train": self.config.train.model_dump(),
            **self.config.quarantine_config,
        }
        method = cls(values)
        method.model = self.model
        method.train, method.valid = self.train, self.valid
        method.fit_info, method.fit_seconds = self.fit_info, self.fit_seconds
        method._forgotten = set(self._forgotten)
        return method

    def repair(self) -> UnlearningReport | None:
        """Retrain from scratch on the remaining rows: what ``forget_many`` of the pending requests gives."""
        if not self.pending:
            return None
        start = time.perf_counter()
        self._fit()
        part = PartChange(
            part="model",
            action="retrained",
            data_hash_after=self.train.content_hash(),
            rows_after=len(self.train),
        )
        return self._repaired([part], start, fit=self.fit_info)
