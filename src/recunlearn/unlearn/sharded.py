"""The shard-training path shared by SISA, RecEraser, GraphEraser: partition, one model per shard,
aggregate; ``forget`` retrains only the shards that held removed rows.

A subclass says how to partition (:meth:`ShardedUnlearner._partition`) and, if it does more than
average, how to aggregate (:meth:`_fit_aggregator`, :meth:`_aggregate`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from pydantic import Field

from recunlearn.data.deletion import DeletionRequest
from recunlearn.models.base import CFModel
from recunlearn.models.config import build_model
from recunlearn.train.runtime import resolve_device
from recunlearn.unlearn._cf import CFMethodConfig, all_item_probabilities, probabilities
from recunlearn.unlearn.base import PartChange, Unlearner, UnlearningReport
from recunlearn.unlearn.executors import ShardJob, get_executor, train_shard


class ShardedConfig(CFMethodConfig):
    """Settings of every shard-based method."""

    n_shards: int = Field(5, ge=1)
    """Number of shards K; each holds about n/K training rows and has its own model."""
    partition_seed: int = 0
    """Seed of the partition (independent of the models' training seed)."""
    executor: str = "inprocess"
    """Where shard training runs: 'inprocess' (default); others when registered (process pool, Ray)."""


class ShardedUnlearner(Unlearner):
    exact = True
    Config = ShardedConfig

    # hooks -----------------------------------------------------------------------------------------
    def _partition(self) -> np.ndarray:
        """Shard index of every row of ``self.train``."""
        raise NotImplementedError

    def _fit_aggregator(self, changed: Sequence[int]) -> dict[str, Any] | None:
        """(Re)fit whatever combines the shards after ``changed`` shards were (re)trained; None if nothing."""
        return None

    def _aggregate(self, scores: np.ndarray, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Combine per-shard scores (K x n, NaN for empty shards) into one score per pair."""
        return np.nanmean(scores, axis=0)

    # shard bookkeeping ------------------------------------------------------------------------------
    def shard_seed(self, shard: int) -> int:
        return self.config.train.seed + shard

    def shard_data(self, shard: int):
        return self.train.take(self.assignment == shard)

    def shard_job(self, shard: int) -> ShardJob:
        train_config = self.config.train.model_copy(update={"seed": self.shard_seed(shard)})
        return ShardJob(shard, self.config.model, train_config, self.shard_data(shard), self.valid)

    def _train_shards(self, shards: Sequence[int]) -> None:
        jobs = [self.shard_job(k) for k in shards]
        nonempty = [j for j in jobs if len(j.train)]
        for job in jobs:
            if not len(job.train):
                self.models[job.shard] = None
                self.shard_info[job.shard] = {"rows": 0, "data_hash": job.train.content_hash()}
        device = resolve_device(self.config.train.device)
        for result in get_executor(self.config.executor).map(train_shard, nonempty):
            model = build_model(self.config.model, self.shard_data(result.shard), self.shard_seed(result.shard))
            model.load_state_dict(result.state)
            self.models[result.shard] = model.to(device).eval()
            self.shard_info[result.shard] = result.info

    def _fit(self) -> None:
        assignment = np.asarray(self._partition(), dtype=np.int64)
        if assignment.shape != (len(self.train),) or assignment.min() < 0 or assignment.max() >= self.config.n_shards:
            raise RuntimeError(f"{self.name}: partition must give a shard in [0, {self.config.n_shards}) per row")
        self.assignment = assignment
        self.models: list[CFModel | None] = [None] * self.config.n_shards
        self.shard_info: list[dict[str, Any]] = [{} for _ in range(self.config.n_shards)]
        self._train_shards(range(self.config.n_shards))
        self.aggregator_info = self._fit_aggregator(range(self.config.n_shards))

    def shard_sizes(self) -> list[int]:
        return np.bincount(self.assignment, minlength=self.config.n_shards).tolist()

    # unlearning -------------------------------------------------------------------------------------------
    def _forget(self, mask: np.ndarray) -> UnlearningReport:
        before = [self.shard_info[k].get("data_hash") for k in range(self.config.n_shards)]
        rows_before = self.shard_sizes()
        affected = sorted(np.unique(self.assignment[mask]).tolist())
        self.train = self.train.drop(mask)
        self.assignment = self.assignment[~mask]
        self._train_shards(affected)
        aggregator = self._fit_aggregator(affected)
        if aggregator is not None:
            self.aggregator_info = aggregator
        rows_after = self.shard_sizes()
        parts = [PartChange(part=f"shard-{k}", action="retrained" if k in affected else "unchanged",
                            data_hash_before=before[k], data_hash_after=self.shard_info[k].get("data_hash"),
                            rows_before=rows_before[k], rows_after=rows_after[k])
                 for k in range(self.config.n_shards)]
        if aggregator is not None:
            parts.append(PartChange(part="aggregator", action="retrained"))
        return self._report(parts, retrained_shards=affected)

    def forget_many(self, requests: Sequence[DeletionRequest]) -> list[UnlearningReport]:
        """Group waiting requests so each affected shard is retrained once; one report per request.

        Each report carries the whole batch's timing and changed parts (they were done together);
        requests that remove nothing new are reported as no-ops.
        """
        if not requests:
            return []
        self._check_fitted()
        masks = [self._rows_of(r) for r in requests]
        union = np.logical_or.reduce(masks)
        if not union.any():
            return [self.forget(r) for r in requests]
        data = self.train
        batch = self.forget(DeletionRequest.from_rows(data, union, request_id="batch"))
        reports = []
        for request, mask in zip(requests, masks):
            if not mask.any():
                reports.append(UnlearningReport(request_id=request.request_id, method=self.name, exact=True,
                                                removed_rows=0, noop=True))
                continue
            removed = data.take(mask)
            pairs = list(zip(removed.users.ids[removed.user].tolist(), removed.items.ids[removed.item].tolist()))
            reports.append(batch.model_copy(update={
                "request_id": request.request_id, "removed_rows": int(mask.sum()), "removed_pairs": pairs,
                "details": {**batch.details, "batched_with": len(requests)}}))
        return reports

    # scoring ---------------------------------------------------------------------------------------------------
    def _per_shard(self, fn) -> np.ndarray:
        outs = [fn(m) if m is not None else None for m in self.models]
        shape = next(o.shape for o in outs if o is not None)
        return np.stack([o if o is not None else np.full(shape, np.nan, np.float32) for o in outs])

    def _score_index(self, users, items):
        return self._aggregate(self._per_shard(lambda m: probabilities(m, users, items)), users, items)

    def score_all(self, users):
        self._check_fitted()
        users = np.asarray(users, np.int64)
        per_shard = self._per_shard(lambda m: all_item_probabilities(m, users))
        k, n_u, n_i = per_shard.shape
        flat = self._aggregate(per_shard.reshape(k, -1), np.repeat(users, n_i), np.tile(np.arange(n_i), n_u))
        return flat.reshape(n_u, n_i)

    # persistence ---------------------------------------------------------------------------------------------------
    def _state(self):
        tensors = {"assignment": torch.from_numpy(self.assignment.copy())}
        for k, model in enumerate(self.models):
            if model is not None:
                tensors.update({f"shard{k}.{n}": v for n, v in model.state_dict().items()})
        tensors.update(self._aggregator_tensors())
        return tensors, {"shard_info": self.shard_info, "aggregator_info": self.aggregator_info}

    def _aggregator_tensors(self) -> dict[str, torch.Tensor]:
        return {}

    def _restore_aggregator(self, tensors: dict[str, torch.Tensor]) -> None:
        pass

    def _restore(self, tensors, meta):
        self.assignment = tensors["assignment"].numpy().astype(np.int64)
        self.shard_info = meta["shard_info"]
        self.aggregator_info = meta["aggregator_info"]
        device = resolve_device(self.config.train.device)
        self.models = []
        for k in range(self.config.n_shards):
            prefix = f"shard{k}."
            state = {n[len(prefix):]: v for n, v in tensors.items() if n.startswith(prefix)}
            if not state:
                self.models.append(None)
                continue
            model = build_model(self.config.model, self.shard_data(k), self.shard_seed(k))
            model.load_state_dict(state)
            self.models.append(model.to(device).eval())
        self._restore_aggregator(tensors)
