"""APA (Hu et al., 2024): Adapter Partition and Aggregation for exact, efficient unlearning of an
LLM-based recommender.

1. Balanced semantic partition: training prompts are embedded by the frozen backbone, k-means gives K
   centres, and a capacity-capped greedy walk over (sample, centre) pairs by cosine distance fills each
   shard up to ceil(n / K) (:func:`recunlearn.unlearn.partition.balanced_semantic_partition`).
2. One LoRA adapter per shard.
3. Sample-adaptive attention: for a prompt, its ``neighbours`` most similar validation prompts (cosine,
   same representations); error_k = adapter k's mean error on them (from cached validation
   predictions); weights = softmax(-tau * error). This is APA's combiner,
   :class:`~recunlearn.unlearn.combine.AdapterAttention`; the method here picks it and the partition.
4. Parameter-level aggregation, D (weighted A and B) or ND (weighted B_k A_k), for a whole batch with
   per-sample weights in one forward pass (:class:`recunlearn.models.llm.lora.MixtureLoRALinear`).
5. Forgetting retrains the adapters whose shards held the removed samples, from the same seed, and
   refreshes their cached validation predictions; the others are untouched.

The partition is computed once, at ``fit``, from frozen (never fine-tuned) representations; forgetting
never re-partitions, so each adapter is exactly what training on its shard minus the removed samples
gives. The k-means centres did see every training prompt's frozen representation: where even that must
go, refit.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from recunlearn.data.samples import SampleTable
from recunlearn.errors import ConfigError
from recunlearn.models.llm.lora import Aggregation
from recunlearn.unlearn._llm_common import LLMUnlearner, ShardedLLMConfig
from recunlearn.unlearn.base import make_config, register
from recunlearn.unlearn.combine import AdapterAttention, unit_rows
from recunlearn.unlearn.partition import (
    PartitionResult,
    balanced_semantic_partition,
    random_partition,
)


class APAConfig(ShardedLLMConfig):
    """APA: semantic partition, one adapter per shard, sample-adaptive parameter-level aggregation."""

    partition: Literal["semantic", "random"] = "semantic"
    """'semantic': APA's balanced semantic partition; 'random': SISA's random shards (an ablation that
    keeps APA's attention and one-pass aggregation, to tell what the partition itself contributes);
    the shard centres that 'semantic' weighting uses are then the shards' mean representations."""
    aggregation: Aggregation = "ND"
    """'D': weighted average of the adapters' A and B; 'ND': weighted average of their updates B_k A_k."""
    weighting: Literal["attention", "average", "major", "semantic"] = "attention"
    """'attention' (APA); ablations: 'average' (equal weights), 'major' (only the adapter with the least
    error on the neighbours), 'semantic' (softmax of tau x cosine similarity to the shard centres)."""
    tau: float = Field(1000.0, ge=0)
    """Temperature of the attention softmax (paper: 1000; 0 gives equal weights); used as given when
    ``tau_grid`` is None."""
    tau_grid: tuple[float, ...] | None = (0.0, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)
    """The attention's tau is chosen from these values, at fit and again after every forget, on
    validation: each validation prompt gets its weights from validation neighbours it is held out
    from (``tau_holdout``), and the value whose weighted mixture of the adapters' cached validation
    probabilities ranks the validation labels best (AUC) wins. No forward pass; it follows the
    current adapters, so a forget leaves no trace of the removed samples in it. None: use ``tau``."""
    tau_holdout: Literal["user", "sample"] = "user"
    """Which validation prompts may not serve as a prompt's neighbours when tau is chosen: 'user', its
    own user's (prompts of users the validation set does not know are what the attention mostly
    meets: on ML-100K's time split 80% of test users have no validation prompt), or 'sample', only
    itself. Prompts with no user id, or whose user holds every validation prompt, are held out alone."""
    neighbours: int = Field(20, ge=1)
    """Validation neighbours per prompt (paper: 20 for movies, 100 for books)."""
    error: Literal["absolute", "bce"] = "absolute"
    """Adapter error on a neighbour: |P(Yes) - label| or binary cross-entropy."""


@register("apa")
class APA(LLMUnlearner):
    """Adapter partition and aggregation: exact unlearning of an LLM recommender (Hu et al. 2024)."""

    Config = APAConfig
    combiner: AdapterAttention
    _validation_state = (*LLMUnlearner._validation_state, "valid_repr")

    def _new_combiner(self) -> AdapterAttention:
        return AdapterAttention()

    def _setup(self) -> None:
        super()._setup()
        self._check_weighting(self.config)
        self.valid_repr = (
            unit_rows(self.representations(self.valid, self._valid_tokens))
            if self.valid is not None
            else None
        )
        self.mixture.mode = self.config.aggregation

    def _drop_validation(self, valid_mask: np.ndarray) -> None:
        super()._drop_validation(valid_mask)
        self.valid_repr = self.valid_repr[~valid_mask]

    def _check_weighting(self, config: APAConfig) -> None:
        if self.valid is None and config.weighting in ("attention", "major"):
            raise ConfigError(
                f"APA's {config.weighting!r} weighting needs validation samples: fit(train, valid)"
            )

    def set_options(self, **changes) -> APA:
        """Change aggregation, weighting, tau, neighbours or error without retraining (ablations)."""
        allowed = {
            "aggregation",
            "weighting",
            "tau",
            "tau_grid",
            "tau_holdout",
            "neighbours",
            "error",
        }
        if set(changes) - allowed:
            raise ConfigError(
                f"only {sorted(allowed)} can change after fit, not {sorted(set(changes) - allowed)}"
            )
        if "tau" in changes and "tau_grid" not in changes and self.config.tau_grid is not None:
            raise ConfigError("tau is chosen from tau_grid; pass tau_grid=None with tau to fix it")
        config = make_config(APAConfig, self.config, changes)
        self._check_weighting(config)
        self.config = config
        self.mixture.mode = self.config.aggregation
        self.combiner.fit(self)
        return self

    def _partition(self) -> PartitionResult:
        embeddings = self.representations(self.train)
        if self.config.partition == "random":
            result = random_partition(len(self.train), self.n_parts, self.config.partition_seed)
            self.combiner.centres = np.stack(
                [embeddings[result.assignment == k].mean(0) for k in range(self.n_parts)]
            )
        else:
            result = balanced_semantic_partition(
                embeddings, self.n_parts, self.config.partition_seed, metric="cosine"
            )
            self.combiner.centres = result.centres.astype(np.float32)
        return result

    @property
    def tau_(self) -> float:
        """The attention's temperature, as chosen on validation (or configured)."""
        return self.combiner.tau_

    @property
    def tau_selection(self) -> dict[str, float]:
        """Held-out validation AUC of each value of ``tau_grid`` (empty when tau is fixed)."""
        return self.combiner.tau_selection

    def weights(self, samples: SampleTable) -> np.ndarray:
        """Per-sample adapter weights (n x K) under the configured weighting; empty adapters get 0."""
        return self.combiner.weights(self, samples)

    def validation_logits(self, tau: float) -> np.ndarray:
        """The aggregated model's logits on the validation prompts, each weighted by the validation
        neighbours it is not held out from, at ``tau``: one forward pass, to check the selection's
        output mixture against APA's own parameter mix."""
        weights = self.combiner.softmax(self, self.combiner.held_out_error(self), tau).numpy()
        return self._pass(self._valid_tokens, weights=weights)

    def _report(self, parts, **details):
        return super()._report(parts, tau=self.tau_, **details)
