"""The partition path shared by every shard-based method of both model families: partition the
training table, train one part per shard through a pluggable :class:`PartTrainer` (a collaborative
model, or a LoRA adapter), combine the parts; ``forget`` retrains only the parts whose shards held
removed rows, then refits the combiner over what changed.

:class:`PartitionedUnlearner` is that path over any :class:`~recunlearn.data.table.Table`;
:class:`ShardedUnlearner` runs it with collaborative models combined by an ``aggregator`` (see
:mod:`recunlearn.unlearn.aggregate`), :class:`~recunlearn.unlearn._llm_common.LLMUnlearner` with
LoRA adapters on prompt samples. A subclass says how to partition (``_partition``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar

import numpy as np
import torch
from pydantic import Field, model_validator

from recunlearn.data.deletion import DeletionRequest
from recunlearn.errors import RecUnlearnError
from recunlearn.models.config import ModelConfig, build_model
from recunlearn.seeds import Seed
from recunlearn.train.loop import fit_model
from recunlearn.train.runtime import resolve_device
from recunlearn.unlearn._cf import CFMethodConfig
from recunlearn.unlearn.aggregate import AggregatorConfig, AverageConfig, build_aggregator
from recunlearn.unlearn.base import (
    CFUnlearner,
    PartChange,
    Unlearner,
    UnlearningReport,
    restored_on_error,
)
from recunlearn.unlearn.executors import ShardJob, get_executor, train_shard
from recunlearn.unlearn.partition import PartitionResult
from recunlearn.unlearn.quarantine import ShardQuarantine


class ShardedConfig(CFMethodConfig):
    """Settings of every shard-based method."""

    n_shards: int = Field(5, ge=1)
    """Number of shards K; each holds about n/K training rows and has its own model."""
    partition_seed: Seed = 0
    """Seed of the partition (independent of the models' training seed)."""
    executor: str = "inprocess"
    """Where shard training runs: 'inprocess' (default), 'process' (a local pool using every core) or
    'ray' (a Ray cluster). Every executor gives the same models under the same seeds, bit for bit
    where training runs on one thread (as 'process' and 'ray' workers do; 'inprocess' uses this
    process's torch threads, and a float sum's order depends on their number)."""
    shard_validation: Literal["all", "touched"] = "all"
    """Validation rows a shard early-stops on: 'all', or 'touched' = those whose user and item both
    occur in the shard's training rows (the pairs it can score; much cheaper when shards hold whole
    users or items, as in RecEraser and GraphEraser); a shard whose touched rows hold one label
    class or none early-stops on all of them."""
    aggregator: AggregatorConfig = Field(default_factory=AverageConfig)
    """How shard models are combined: {kind = "average"}, {kind = "attention"} (RecEraser) or
    {kind = "weighted", tau = 10} (per-user weights from validation error)."""
    quarantine_fallback: Literal["popularity", "none"] = "popularity"
    """What serves while a quarantine has set aside every shard (a user spread over every shard, or
    requests arriving faster than repairs): 'popularity', the most popular items of the remaining
    rows, so the deletion still takes effect at once; 'none' refuses such a quarantine (the request
    then waits for the repair, or is forgotten directly)."""
    shard_lr: Annotated[float, Field(gt=0)] | Literal["scaled"] = "scaled"
    """Adam learning rate of each shard's model. 'scaled' = ``train.lr`` x K: a shard holds about 1/K
    of the rows, so at the same batch size its epoch is K times fewer Adam steps; the K-times larger
    step keeps an epoch's progress near full training's, and shards early-stop in about as many epochs
    as the full model instead of several times more (ML-100K, MF, K=10: about 20 epochs instead of 55
    to 115, some shards stopping before they learned anything). With BPR it is ``train.lr`` itself:
    BPR's rate is already ten times BCE's, and its shards trained at K times it rank worse (ML-100K,
    K=10: SISA Recall@20 0.07 against 0.13, GraphEraser 0.14 against 0.30). A number sets it directly."""

    @model_validator(mode="after")
    def _aggregator_follows_the_training_loss(self) -> ShardedConfig:
        """A learned aggregator left without a loss trains with the shards' own (BPR on implicit feedback);
        an average left unset averages a BPR model's logits."""
        if getattr(self.aggregator, "loss", "") is None:
            self.aggregator = self.aggregator.model_copy(update={"loss": self.train.loss})
        if getattr(self.aggregator, "over", "") is None:
            self.aggregator = self.aggregator.model_copy(
                update={"over": "logits" if self.train.loss == "bpr" else "probabilities"}
            )
        return self


M = TypeVar("M", bound="PartitionedUnlearner")


class PartTrainer(ABC, Generic[M]):
    """Trains the model of one part from scratch on its shard's rows: the jobs are picklable, so any
    executor runs :meth:`runner`'s function on them, and the results are installed into the method."""

    label: ClassVar[str]
    """What a part is called in reports: parts are ``{label}-k``, details list ``retrained_{label}s``
    and ``empty_{label}s``."""

    @abstractmethod
    def runner(self) -> Callable[[Any], Any]:
        """The module-level function an executor runs on each job (picklable by name)."""

    @abstractmethod
    def job(self, method: M, part: int) -> Any:
        """The job that trains ``part`` on its current rows (``job.shard``, ``job.train``)."""

    @abstractmethod
    def clear(self, method: M, job: Any) -> None:
        """Record a part whose shard has no rows left (it has no model)."""

    @abstractmethod
    def install(self, method: M, result: Any) -> None:
        """Put a trained part in place."""

    @abstractmethod
    def reload(self, method: M, parts: Sequence[int]) -> None:
        """After a failed ``forget`` put the attributes back: reload what lives outside them."""


class PartitionedUnlearner(Unlearner):
    """Partition, one part per shard (``models[k]``, ``shard_info[k]``; rows by ``assignment``),
    and a combiner; ``forget`` retrains the affected parts and refits the combiner."""

    exact = True
    trainer: ClassVar[PartTrainer[Any]]
    """How a part is trained (a collaborative model, a LoRA adapter)."""
    _forget_state: ClassVar[tuple[str, ...]] = ("train", "assignment", "models", "shard_info")
    """Attributes ``forget`` changes: put back if it fails."""
    _combiner_state: ClassVar[tuple[str, ...]] = ()
    """Attributes a combiner refit changes in place: deep-copied before it, put back if it fails."""

    # hooks -----------------------------------------------------------------------------------------
    def _partition(self) -> PartitionResult | np.ndarray:
        """Shard index of every row of ``self.train`` (a :class:`PartitionResult` to report its centres)."""
        raise NotImplementedError

    def _combiner_scope(self, affected: list[int]) -> Sequence[int] | None:
        """The parts the combiner is refitted over once ``affected`` are retrained; None: no refit."""
        return None

    def _refit_combiner(self, parts: Sequence[int]) -> PartChange | None:
        """Refit the combiner over ``parts`` (retrained, or with changed validation data); the part
        change to report, if it is a part of its own."""
        return None

    # parts ------------------------------------------------------------------------------------------
    @property
    def n_parts(self) -> int:
        return getattr(self.config, "n_shards", 1)

    def _assign(self, partition: PartitionResult | np.ndarray) -> np.ndarray:
        """The checked shard index of every training row."""
        assignment = np.asarray(
            partition.assignment if isinstance(partition, PartitionResult) else partition,
            dtype=np.int64,
        )
        if (
            assignment.shape != (len(self.train),)
            or assignment.min() < 0
            or assignment.max() >= self.n_parts
        ):
            raise RuntimeError(
                f"{self.name}: partition must give every row a {self.trainer.label} index in "
                f"[0, {self.n_parts})"
            )
        self.assignment = assignment
        self.models: list[Any] = [None] * self.n_parts
        self.shard_info: list[dict[str, Any]] = [{} for _ in range(self.n_parts)]
        return assignment

    def _train_shards(self, parts: Sequence[int]) -> None:
        jobs = [self.trainer.job(self, k) for k in parts]
        for job in jobs:
            if not len(job.train):
                self.trainer.clear(self, job)
        for result in get_executor(self.config.executor).map(
            self.trainer.runner(), [j for j in jobs if len(j.train)]
        ):
            self.trainer.install(self, result)

    def shard_sizes(self) -> list[int]:
        return np.bincount(self.assignment, minlength=self.n_parts).tolist()

    # unlearning -------------------------------------------------------------------------------------------
    def _forget(self, mask: np.ndarray) -> UnlearningReport:
        label = self.trainer.label
        before = [info.get("data_hash") for info in self.shard_info]
        rows_before = self.shard_sizes()
        affected = sorted(np.unique(self.assignment[mask]).tolist())
        hash_before = self.train.content_hash()
        scope = self._combiner_scope(affected)
        combiner = None
        with restored_on_error(
            self,
            self._forget_state,
            deep=self._combiner_state if scope is not None else (),
            after=lambda: self.trainer.reload(self, affected),
        ):
            self.train = self.train.drop(mask)
            self.assignment = self.assignment[~mask]
            self._train_shards(affected)
            if scope is not None:
                combiner = self._refit_combiner(scope)
        rows_after = self.shard_sizes()
        parts = [
            PartChange(
                part=f"{label}-{k}",
                action="retrained" if k in affected else "unchanged",
                data_hash_before=before[k],
                data_hash_after=self.shard_info[k].get("data_hash"),
                rows_before=rows_before[k],
                rows_after=rows_after[k],
            )
            for k in range(self.n_parts)
        ]
        if combiner is not None:
            parts.append(
                combiner.model_copy(
                    update={"data_hash_before": hash_before, "rows_before": len(mask)}
                )
            )
        empty = [k for k in range(self.n_parts) if rows_after[k] == 0]
        return self._report(parts, **{f"retrained_{label}s": affected, f"empty_{label}s": empty})

    def forget_many(self, requests: Sequence[DeletionRequest]) -> list[UnlearningReport]:
        """Group waiting requests so each affected part is retrained once (:meth:`_forget_union`); one
        report per request (each carries the batch's time and changed parts)."""
        return self._forget_union(requests)


class ModelTrainer(PartTrainer["ShardedUnlearner"]):
    """A collaborative model per shard (:func:`~recunlearn.unlearn.executors.train_shard`)."""

    label = "shard"

    def runner(self) -> Callable[[ShardJob], Any]:
        return train_shard

    def job(self, method: ShardedUnlearner, part: int) -> ShardJob:
        return method.shard_job(part)

    def clear(self, method: ShardedUnlearner, job: ShardJob) -> None:
        method.models[job.shard] = None
        method.shard_info[job.shard] = {"rows": 0, "data_hash": job.train.content_hash()}

    def install(self, method: ShardedUnlearner, result: Any) -> None:
        model = build_model(
            method.config.model, method.shard_data(result.shard), method.shard_seed(result.shard)
        )
        model.load_state_dict(result.state)
        method.models[result.shard] = model.to(resolve_device(method.config.train.device)).eval()
        method.shard_info[result.shard] = result.info

    def reload(self, method: ShardedUnlearner, parts: Sequence[int]) -> None:
        """Nothing: the models live in ``models``."""


class ShardedUnlearner(ShardQuarantine, PartitionedUnlearner, CFUnlearner):
    Config = ShardedConfig
    trainer = ModelTrainer()
    _forget_state = (*PartitionedUnlearner._forget_state, "aggregator_info")
    _combiner_state = ("aggregator",)

    # shard bookkeeping ------------------------------------------------------------------------------
    def shard_seed(self, shard: int) -> int:
        return self.config.train.seed + shard

    def shard_data(self, shard: int):
        return self.train.take(self.assignment == shard)

    def shard_validation_data(self, shard_data):
        """The validation rows a shard early-stops on (see ``shard_validation``)."""
        if self.valid is None or self.config.shard_validation == "all":
            return self.valid
        touched = np.isin(self.valid.user, shard_data.user) & np.isin(
            self.valid.item, shard_data.item
        )
        labels = self.valid.label[touched]
        if (
            len(np.unique(labels)) < 2
            if self.config.train.stopping_metric == "auc"
            else not (labels > 0).any()
        ):
            # nothing to early-stop on (a small shard, or one a deletion shrank): every row instead,
            # still a function of the shard's data, so a retrained shard equals one trained afresh
            return self.valid
        return self.valid.take(touched)

    def shard_lr(self) -> float:
        if self.config.shard_lr == "scaled":
            return self.config.train.lr * (
                self.config.n_shards if self.config.train.loss == "bce" else 1
            )
        return self.config.shard_lr

    def shard_job(self, shard: int) -> ShardJob:
        train_config = self.config.train.model_copy(
            update={"seed": self.shard_seed(shard), "lr": self.shard_lr()}
        )
        data = self.shard_data(shard)
        return ShardJob(
            shard, self.config.model, train_config, data, self.shard_validation_data(data)
        )

    def _fit(self) -> None:
        assignment = self._assign(self._partition())
        self.partition_info = PartitionResult(assignment, self.config.n_shards).summary()
        self._train_shards(range(self.config.n_shards))
        self.aggregator = build_aggregator(self.config.aggregator)
        self.aggregator_info = self.aggregator.fit(
            self.models, self.train, self.valid, range(self.config.n_shards), self.assignment
        )

    # the aggregator ---------------------------------------------------------------------------------------
    def _combiner_scope(self, affected: list[int]) -> Sequence[int] | None:
        # its cached errors hold dropped validation rows: refitted over every shard
        every_shard = self._validation_changed and self.aggregator.uses_validation
        if every_shard:
            return range(self.config.n_shards)
        return affected if self.aggregator.depends_on_shards else None

    def _refit_combiner(self, parts: Sequence[int]) -> PartChange:
        self.aggregator_info = self.aggregator.fit(
            self.models, self.train, self.valid, parts, self.assignment
        )
        return PartChange(
            part="aggregator",
            action="retrained",
            data_hash_before=self.train.content_hash(),
            data_hash_after=self.train.content_hash(),
            rows_before=len(self.train),
            rows_after=len(self.train),
        )

    def _forget_validation_only(self) -> UnlearningReport:
        """The shards stay; an aggregator fitted with the validation data is fitted again without the rows."""
        if not self.aggregator.uses_validation:
            return super()._forget_validation_only()
        with restored_on_error(self, ("aggregator_info",), deep=self._combiner_state):
            part = self._refit_combiner(range(self.config.n_shards))
        return self._report([part], validation_only=True)

    # scoring ---------------------------------------------------------------------------------------------------
    def _score_index(self, users, items):
        return self.aggregator.score(self.models, users, items)

    def score_all(self, users):
        self._check_fitted()
        return self.aggregator.score_all(
            self.models, np.asarray(users, np.int64), self.train.n_items
        )

    # persistence ---------------------------------------------------------------------------------------------------
    def _state(self):
        tensors = {"assignment": torch.from_numpy(self.assignment.copy())}
        for k, model in enumerate(self.models):
            if model is not None:
                tensors.update({f"shard{k}.{n}": v for n, v in model.state_dict().items()})
        tensors.update({f"aggregator.{n}": v for n, v in self.aggregator.tensors().items()})
        return tensors, {
            "shard_info": self.shard_info,
            "aggregator_info": self.aggregator_info,
            "partition_info": self.partition_info,
        }

    def _restore(self, tensors, meta):
        self.assignment = tensors["assignment"].numpy().astype(np.int64)
        self.shard_info = meta["shard_info"]
        self.aggregator_info = meta["aggregator_info"]
        self.partition_info = meta["partition_info"]
        device = resolve_device(self.config.train.device)
        self.models = []
        for k in range(self.config.n_shards):
            prefix = f"shard{k}."
            state = {n[len(prefix) :]: v for n, v in tensors.items() if n.startswith(prefix)}
            if not state:
                self.models.append(None)
                continue
            model = build_model(self.config.model, self.shard_data(k), self.shard_seed(k))
            model.load_state_dict(state)
            self.models.append(model.to(device).eval())
        self.aggregator = build_aggregator(self.config.aggregator)
        fitted = {
            n[len("aggregator.") :]: v for n, v in tensors.items() if n.startswith("aggregator.")
        }
        if fitted:  # none in a quarantined model's folder: the repair fits it afresh
            self.aggregator.restore(fitted, self.models)


class EmbeddingShardedConfig(ShardedConfig):
    """Settings of shard-based methods that cluster user / item embeddings (RecEraser, GraphEraser)."""

    embedding_model: ModelConfig | None = None
    """Model trained once on all training data whose representations are clustered; None = ``model``.
    Ignored when embeddings are given with :meth:`EmbeddingShardedUnlearner.use_embeddings`."""
    iterations: int = Field(10, ge=1)
    """Rounds of the balanced k-means (T): capped assignment, then centre update; stops early on a repeat."""
    shard_validation: Literal["all", "touched"] = "touched"
    """Shards hold whole users (or items), so each early-stops on the validation pairs it can score."""


class EmbeddingShardedUnlearner(ShardedUnlearner):
    """A shard-based method whose partition clusters embeddings of users and items.

    The embeddings come from a model trained once on all training data (RecEraser's protocol), or are
    given. The partition is fixed at ``fit``: a deletion retrains shards, it never re-partitions, so the
    assignment of the remaining rows still reflects the pre-trained model; give embeddings learned
    without the data that may be deleted (e.g. from public side information) where that matters.
    """

    Config = EmbeddingShardedConfig
    _given_embeddings: tuple[np.ndarray, np.ndarray] | None = None

    def use_embeddings(self, users: np.ndarray, items: np.ndarray) -> EmbeddingShardedUnlearner:
        """Partition on these (n_users x d, n_items x d) embeddings instead of pre-training a model."""
        self._given_embeddings = (np.asarray(users, np.float64), np.asarray(items, np.float64))
        return self

    def partition_embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        """User and item embeddings the partition clusters."""
        if self._given_embeddings is not None:
            users, items = self._given_embeddings
            if len(users) != self.train.n_users or len(items) != self.train.n_items:
                raise RecUnlearnError(
                    f"{self.name}: given embeddings have {len(users)} users and {len(items)} items; "
                    f"the data has {self.train.n_users} and {self.train.n_items}"
                )
            return users, items
        model_config = self.config.embedding_model or self.config.model
        model = fit_model(
            model_config, self.train, self.valid, self.config.train, desc="partition embeddings"
        ).model
        with torch.no_grad():
            users, items = model.representations()
        return users.detach().cpu().double().numpy(), items.detach().cpu().double().numpy()
