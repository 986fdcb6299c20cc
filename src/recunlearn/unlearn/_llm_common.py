"""The partition path (:class:`~recunlearn.unlearn.sharded.PartitionedUnlearner`) for the
language-model recommender: prompt samples instead of an interaction table, and a LoRA adapter per
shard on one frozen backbone (K = 1 for retraining) as the part, trained through the executors. What is
its own: ids a request names in prompts, scoring prompts, and a folder format with each adapter in
peft's own format.

A subclass says how samples are partitioned (:meth:`LLMUnlearner._partition`) and which combiner
(:mod:`recunlearn.unlearn.combine`) gives one logit per prompt from the adapters
(:meth:`LLMUnlearner._new_combiner`).

Request matching, scoring and the folder format are the family's own because a prompt sample is not
an interaction pair: a request names samples, users and items that prompts mention, and a score needs
a prompt. The partition logic is the collaborative family's, shared through
:class:`~recunlearn.unlearn.sharded.PartitionedUnlearner`.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from recunlearn.data.deletion import DeletionRequest
from recunlearn.data.samples import SampleTable
from recunlearn.errors import ConfigError, NotFittedError, RecUnlearnError, UnknownIdError
from recunlearn.models.llm.backbones import (
    Backbone,
    BackboneConfig,
    fresh_scorer,
    load_backbone,
    resolve_model_path,
)
from recunlearn.models.llm.lora import (
    LoRAConfig,
    MixtureWeights,
    build_mixture,
    load_adapter,
    load_peft_adapter,
    save_peft_adapter,
    target_paths,
)
from recunlearn.models.llm.scoring import predict_logits, representations, tokenize
from recunlearn.seeds import Seed
from recunlearn.train.adapter import AdapterJob, AdapterTrainConfig, train_adapter
from recunlearn.train.runtime import configure_threads, resolve_device
from recunlearn.unlearn.base import PartChange, UnlearningReport, restored_on_error
from recunlearn.unlearn.combine import AdapterCombiner, OutputAverage, SingleAdapter
from recunlearn.unlearn.partition import PartitionResult
from recunlearn.unlearn.quarantine import AdapterQuarantine
from recunlearn.unlearn.sharded import PartitionedUnlearner, PartTrainer


class LLMMethodConfig(BaseModel):
    """Settings shared by every method on the language-model recommender."""

    model_config = ConfigDict(extra="forbid")
    backbone: BackboneConfig = Field(default_factory=BackboneConfig)
    """The frozen language model and how prompts are fed to it (default: the embedded MiniLM)."""
    lora: LoRAConfig = Field(default_factory=LoRAConfig)
    """Adapter shape (TALLRec: r=8, alpha=16, dropout 0.05, attention q/v projections)."""
    train: AdapterTrainConfig = Field(default_factory=AdapterTrainConfig)
    """How each adapter is trained (TALLRec's defaults; presets for CPU are in the APA benchmark)."""
    device: str | None = None
    """'cpu', 'cuda', ...; None = $RECUNLEARN_DEVICE, else CUDA when present, else CPU."""
    executor: str = "inprocess"
    """Where adapter training runs: 'inprocess' (default), 'process' (a local pool) or 'ray' (a Ray
    cluster, with a GPU per task when it has them)."""
    inference_batch_size: int = Field(64, ge=1)
    """Prompts per forward pass when scoring."""


class ShardedLLMConfig(LLMMethodConfig):
    """Settings of methods with one adapter per shard."""

    n_shards: int = Field(4, ge=1)
    """Number of shards K, each with its own adapter (APA's experiments: 4)."""
    partition_seed: Seed = 0
    """Seed of the partition (independent of the adapters' training seed)."""
    shared_init: bool = False
    """Start every adapter from the same initialisation (LoRA A drawn with ``train.seed``; B and the
    encoder head are zero anyway), with data order and dropout still seeded per shard
    (``train.seed + k``), so each adapter stays a pure function of its shard. Meant for APA, whose
    parameter-level aggregation mixes the adapters' A and B (model soups need a shared start). Off by
    default: on the CPU comparison in docs/apa.md it brought APA's equal-weight mix closer to output
    averaging but did not raise APA's AUC (its attention is nearly one-hot), so the default keeps the
    per-shard starts (``train.seed + k``) that the published figures used."""


class AdapterTrainer(PartTrainer["LLMUnlearner"]):
    """A LoRA adapter per shard (:func:`~recunlearn.train.adapter.train_adapter`), loaded into the
    mixture that scores with every adapter, with its logits on the validation samples cached."""

    label = "adapter"

    def runner(self) -> Callable[[AdapterJob], Any]:
        return train_adapter

    def job(self, method: LLMUnlearner, part: int) -> AdapterJob:
        return method.adapter_job(part)

    def clear(self, method: LLMUnlearner, job: AdapterJob) -> None:
        method.models[job.shard] = None
        method.shard_info[job.shard] = {"samples": 0, "data_hash": job.train.content_hash()}
        method.valid_logits[job.shard] = 0.0
        load_adapter(method.scorer, job.shard, None)

    def install(self, method: LLMUnlearner, result: Any) -> None:
        method.models[result.shard] = result.adapter
        method.shard_info[result.shard] = result.info
        if result.valid_logits is not None:
            method.valid_logits[result.shard] = result.valid_logits
        load_adapter(method.scorer, result.shard, result.adapter)

    def reload(self, method: LLMUnlearner, parts: Sequence[int]) -> None:
        """The mixture holds the adapters' weights outside the attributes."""
        for k in parts:
            load_adapter(method.scorer, k, method.models[k])


class UserShardedLLMConfig(ShardedLLMConfig):
    """Settings of methods whose shards hold whole users, clustered on the mean frozen representation
    of their prompts."""

    iterations: int = Field(10, ge=1)
    """Rounds of the balanced k-means (assignment by the capped walk, then centre update)."""


class LLMUnlearner(AdapterQuarantine, PartitionedUnlearner):
    """A TALLRec-style recommender over prompt samples with one LoRA adapter per shard
    (``models[k]``: adapter k's tensors, None for a shard emptied by deletions)."""

    data_kind = "samples"
    table_type = SampleTable
    row_noun = "sample"
    state_file = "state.safetensors"
    train: SampleTable
    valid: SampleTable | None
    _forgotten: set[str]  # sample ids
    Config: ClassVar[type[BaseModel]] = LLMMethodConfig
    trainer = AdapterTrainer()
    _combiner_state = ("combiner",)

    # shape hooks ------------------------------------------------------------------------------------
    def _partition(self) -> PartitionResult | np.ndarray:
        """Adapter index of every training sample (default: one adapter for all); a
        :class:`PartitionResult` is reported as ``partition_info``."""
        return np.zeros(len(self.train), np.int64)

    def user_representations(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean frozen representation of each user's training prompts, and each sample's user index
        (what the user-based partitions cluster)."""
        users, row_user = np.unique(self.train.user, return_inverse=True)
        if len(users) < self.n_parts or (len(users) == 1 and users[0] == ""):
            raise ConfigError(
                f"{self.name} partitions by user, but the samples name {len(users)} user(s) "
                f"for {self.n_parts} shards (TALLRec JSON records need a 'user' field)"
            )
        embeddings = self.representations(self.train).astype(np.float64)
        sums = np.zeros((len(users), embeddings.shape[1]))
        np.add.at(sums, row_user, embeddings)
        return sums / np.bincount(row_user)[:, None], row_user

    def _new_combiner(self) -> AdapterCombiner:
        """How the adapters' outputs are combined (default: adapter 0 alone)."""
        return SingleAdapter()

    _forget_state: ClassVar[tuple[str, ...]] = (*PartitionedUnlearner._forget_state, "valid_logits")

    @property
    def adapters(self) -> list[dict[str, torch.Tensor] | None]:
        """Each shard's adapter tensors (None for a shard emptied by deletions): ``models``."""
        return self.models

    @property
    def adapter_info(self) -> list[dict[str, Any]]:
        """Each adapter's training record (epochs, samples, data hash): ``shard_info``."""
        return self.shard_info

    def _combiner_scope(self, affected: list[int]) -> Sequence[int]:
        """Every forget refits the combiner: APA's attention is fitted on every adapter's validation
        logits, which a retrained adapter changes."""
        return affected

    def _refit_combiner(self, parts: Sequence[int]) -> None:
        self.combiner.fit(self)

    _validation_state: ClassVar[tuple[str, ...]] = ("valid", "valid_logits", "_valid_tokens")

    # fit -------------------------------------------------------------------------------------------------
    def _check_tables(self, train: SampleTable, valid: SampleTable | None) -> None:
        if len(train) < self.n_parts:
            raise RecUnlearnError(
                f"{self.name}: {len(train)} samples cannot fill {self.n_parts} adapters"
            )

    def _fit(self) -> None:
        configure_threads()
        self._known_users, self._known_items = self._named_users(), self._named_items()
        self._setup()
        partition = self._partition()
        self.partition_info = (
            partition.summary() if isinstance(partition, PartitionResult) else None
        )
        self._assign(partition)
        self.valid_logits = np.zeros(
            (self.n_parts, len(self.valid) if self.valid is not None else 0), np.float32
        )
        self._train_shards(range(self.n_parts))
        self.combiner.fit(self)

    def _setup(self) -> None:
        """Load the frozen backbone, build the mixture model that holds the K adapters, and the combiner."""
        self.device = resolve_device(self.config.device)
        self.backbone: Backbone = load_backbone(self.config.backbone, self.device)
        self.scorer = fresh_scorer(self.backbone)
        paths = target_paths(self.scorer, self.config.lora)
        self.mixture: MixtureWeights = build_mixture(
            self.scorer, paths, self.config.lora.r, self.config.lora.scaling, self.n_parts
        )
        self._valid_tokens = self._tokenize(self.valid) if self.valid is not None else None
        self.combiner = self._new_combiner()

    def _tokenize(self, samples: SampleTable) -> list[list[int]]:
        return tokenize(
            self.backbone.tokenizer,
            samples.prompts(self.backbone.template),
            self.config.backbone.max_length,
        )

    def representations(
        self, samples: SampleTable, token_ids: list[list[int]] | None = None
    ) -> np.ndarray:
        """Frozen-backbone representations of prompts (layer and pooling from the backbone config)."""
        bb = self.config.backbone
        return representations(
            self.backbone.scorer,
            token_ids or self._tokenize(samples),
            self.backbone.tokenizer.pad_token_id,
            self.device,
            bb.representation_layer,
            bb.pooling,
            self.config.inference_batch_size,
        )

    def adapter_seed(self, shard: int) -> int:
        return self.config.train.seed + shard

    def adapter_init_seed(self, shard: int) -> int | None:
        """Seed of adapter ``shard``'s initialisation; None = its own :meth:`adapter_seed`."""
        return self.config.train.seed if getattr(self.config, "shared_init", False) else None

    def shard_samples(self, shard: int) -> SampleTable:
        return self.train.take(self.assignment == shard)

    def adapter_job(self, shard: int) -> AdapterJob:
        """The (picklable) job that trains adapter ``shard`` from scratch on its current samples."""
        return AdapterJob(
            shard,
            self.config.backbone,
            self.config.lora,
            self.config.train,
            self.adapter_seed(shard),
            self.shard_samples(shard),
            self.valid,
            str(self.device),
            self.adapter_init_seed(shard),
        )

    @property
    def present(self) -> np.ndarray:
        """Adapters that exist (a shard emptied by deletions has none)."""
        return np.array([a is not None for a in self.models])

    # scoring ---------------------------------------------------------------------------------------------
    def score(self, samples: SampleTable) -> np.ndarray:
        """P(the user likes the target) for each prompt sample; tokenisation included."""
        self._check_fitted()
        if not isinstance(samples, SampleTable):
            raise RecUnlearnError(
                f"{self.name} scores prompt samples (SampleTable), not {type(samples).__name__}"
            )
        if not len(samples):
            return np.zeros(0, np.float32)
        logits = self.combiner.logits(self, self._tokenize(samples), samples)
        return (1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).astype(np.float32)

    def _pass(
        self,
        token_ids: list[list[int]],
        single: int | None = None,
        weights: np.ndarray | None = None,
    ) -> np.ndarray:
        """One forward pass over all prompts with adapter ``single`` or per-sample ``weights`` (n x K)."""

        def before(rows: np.ndarray) -> None:
            if single is not None:
                self.mixture.set(single=single)
            else:
                self.mixture.set(
                    weights=torch.as_tensor(weights[rows], dtype=torch.float32, device=self.device)
                )

        return predict_logits(
            self.scorer,
            token_ids,
            self.backbone.tokenizer.pad_token_id,
            self.device,
            self.config.inference_batch_size,
            before,
        )

    def adapter_logits(self, samples: SampleTable) -> np.ndarray:
        """Each adapter's logits alone (K x n; NaN rows for empty adapters): one pass per adapter."""
        self._check_fitted()
        tokens = self._tokenize(samples)
        out = np.full((self.n_parts, len(samples)), np.nan, np.float32)
        for k in np.flatnonzero(self.present):
            out[k] = self._pass(tokens, single=int(k))
        return out

    # forgetting ---------------------------------------------------------------------------------------------
    def _rows_of(self, request: DeletionRequest) -> np.ndarray:
        """Training samples the request removes: by sample id, by user, or every prompt that mentions an
        item (or a user's item). Already-forgotten samples match nothing; never-seen ids raise."""
        data = self.train
        mask = np.zeros(len(data), bool)
        if request.samples:
            current = [s for s in request.samples if s not in self._forgotten]
            in_train = set(data.ids.tolist())
            validation = set(self.valid.ids.tolist()) if self.valid is not None else set()
            # a validation sample is _valid_rows_of's; an id in neither table raises here
            mask[data.positions([s for s in current if s in in_train or s not in validation])] = (
                True
            )
        unknown_users = [u for u in request.named_users if u not in self._known_users]
        if unknown_users:
            raise UnknownIdError(f"unknown user id(s): {', '.join(map(repr, unknown_users[:5]))}")
        unknown_items = [i for i in request.named_items if i not in self._known_items]
        if unknown_items:  # a mistyped id would otherwise look like a deletion already done
            raise UnknownIdError(
                f"item id(s) no training or validation prompt ever mentioned: {', '.join(map(repr, unknown_items[:5]))}"
            )
        return mask | self._named_by(request, data)

    @staticmethod
    def _named_by(request: DeletionRequest, samples: SampleTable) -> np.ndarray:
        """Samples of a user the request names, or whose prompt mentions an item it names (of that
        user, for a pair): every prompt that holds the named data."""
        mask = np.zeros(len(samples), bool)
        if request.users:
            mask |= np.isin(samples.user, list(request.users))
        if request.items:
            mask |= samples.mentions(request.items)
        for user, item in request.pairs:
            mask |= (samples.user == user) & samples.mentions([item])
        return mask

    def _masks_of(self, request: DeletionRequest) -> tuple[np.ndarray, np.ndarray]:
        return self._rows_of(request), self._valid_rows_of(request)

    def _valid_rows_of(self, request: DeletionRequest) -> np.ndarray:
        """Validation samples the request names, as :meth:`_rows_of` finds training samples (a prompt
        that mentions a deleted user's item holds their data too). Ids were checked by ``_rows_of``."""
        valid = self.valid
        if valid is None or not len(valid):
            return np.zeros(len(valid) if valid is not None else 0, bool)
        mask = self._named_by(request, valid)
        if request.samples:
            mask |= np.isin(valid.ids, [s for s in request.samples if s not in self._forgotten])
        return mask

    def _record_removed(
        self, report: UnlearningReport, removed: SampleTable, removed_valid: SampleTable | None
    ) -> None:
        """The removed samples' ids, in the report's details."""
        ids = removed.ids.tolist()
        valid_ids = removed_valid.ids.tolist() if removed_valid is not None else []
        self._forgotten.update(ids + valid_ids)
        report.details["removed_samples"] = ids
        report.details["removed_valid_samples"] = valid_ids

    def _drop_validation(self, valid_mask: np.ndarray) -> None:
        keep = ~valid_mask
        self.valid = self.valid.drop(valid_mask)
        self.valid_logits = self.valid_logits[:, keep]
        self._valid_tokens = [tokens for tokens, kept in zip(self._valid_tokens, keep) if kept]

    def _forget_validation_only(self) -> UnlearningReport:
        # what the combiner cached from the validation samples (APA's attention)
        with restored_on_error(self, (), deep=self._combiner_state):
            self.combiner.fit(self)
        return self._report(
            [PartChange(part=f"adapter-{k}", action="unchanged") for k in range(self.n_parts)],
            retrained_adapters=[],
            validation_only=True,
        )

    def _batch_share(
        self, data: SampleTable, valid: SampleTable | None, mask: np.ndarray, valid_mask: np.ndarray
    ) -> dict[str, Any]:
        return {
            "details": {
                "removed_samples": data.ids[mask].tolist(),
                "removed_valid_samples": valid.ids[valid_mask].tolist()
                if valid is not None
                else [],
            }
        }

    # persistence ---------------------------------------------------------------------------------------------
    def _state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors = {
            "assignment": torch.from_numpy(self.assignment.copy()),
            "valid_logits": torch.from_numpy(self.valid_logits.copy()),
            **self.combiner.tensors(),
        }
        return tensors, {"adapter_info": self.shard_info, "partition_info": self.partition_info}

    def _restore(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        self._setup()  # the backbone is loaded again from its config
        self.assignment = tensors["assignment"].numpy().astype(np.int64)
        self.valid_logits = tensors["valid_logits"].numpy().astype(np.float32)
        self.shard_info = meta["adapter_info"]
        self.partition_info = meta["partition_info"]
        self.combiner.restore(tensors)

    def _save_files(self, path: Path, keep_forgotten: bool) -> dict[str, Any]:
        """``adapters/adapter-k/`` in peft's format for the backbone's Hugging Face model
        (``adapter_model.safetensors`` + ``adapter_config.json`` naming the model's folder; an
        encoder's head in ``recunlearn_head.safetensors``), and the ids a request may name."""
        shutil.rmtree(
            path / "adapters", ignore_errors=True
        )  # an adapter saved here before, since forgotten, must not return
        for k, adapter in enumerate(self.models):
            if adapter is not None:
                save_peft_adapter(
                    path / "adapters" / f"adapter-{k}",
                    adapter,
                    self.config.lora,
                    self.backbone.scorer,
                    resolve_model_path(self.config.backbone.name),
                )
        # without the forget log, no id of forgotten data either: only what the samples still name
        return {
            "known_users": sorted(self._known_users if keep_forgotten else self._named_users()),
            "known_items": sorted(self._known_items if keep_forgotten else self._named_items()),
        }

    def _named_users(self) -> set[str]:
        """The users the training and validation samples still name."""
        return set(self.train.user.tolist()) | (
            set(self.valid.user.tolist()) if self.valid is not None else set()
        )

    def _named_items(self) -> set[str]:
        return self.train.mentioned_items() | (
            self.valid.mentioned_items() if self.valid is not None else set()
        )

    def _load_tables(self, path: Path) -> None:
        self.train = SampleTable.load(path / "train.npz")
        valid = path / "valid.npz"
        self.valid = SampleTable.load(valid) if valid.is_file() else None

    def _load_files(self, path: Path, document: dict[str, Any]) -> None:
        self._known_users = set(document["known_users"])
        self._known_items = set(document["known_items"])
        self.models = []
        for k in range(self.n_parts):
            folder = path / "adapters" / f"adapter-{k}"
            self.models.append(load_peft_adapter(folder, self.scorer) if folder.is_dir() else None)
            load_adapter(self.scorer, k, self.models[k])
        self.combiner.fit(self)

    def _check_fitted(self) -> None:
        if self.train is None or not hasattr(self, "models"):
            raise NotFittedError(f"{self.name}: call fit() first")


class ShardedLLMUnlearner(LLMUnlearner):
    """Shards of prompt samples, one adapter each, the adapters' probabilities averaged (K forward
    passes): the LLM form of SISA, RecEraser and GraphEraser, which differ only in the partition."""

    Config = ShardedLLMConfig

    def _new_combiner(self) -> AdapterCombiner:
        return OutputAverage()
