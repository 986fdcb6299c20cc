"""SISA for the language-model recommender: random shards, one LoRA adapter each, predictions averaged
(K forward passes at scoring time). Forgetting retrains the adapters whose shards held the samples."""

from __future__ import annotations

from recunlearn.unlearn._llm_common import ShardedLLMUnlearner
from recunlearn.unlearn.base import register
from recunlearn.unlearn.partition import PartitionResult, random_partition


@register("llm-sisa")
class LLMSISA(ShardedLLMUnlearner):
    """Random shards of prompt samples, one adapter each, averaged predictions (Bourtoule et al.)."""

    def _partition(self) -> PartitionResult:
        return random_partition(len(self.train), self.n_parts, self.config.partition_seed)
