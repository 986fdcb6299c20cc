"""SISA for the language-model recommender: random shards, one LoRA adapter each, predictions averaged
(K forward passes at scoring time). Forgetting retrains the adapters whose shards held the samples."""

from __future__ import annotations

import numpy as np

from recunlearn.unlearn._llm_common import LLMUnlearner, ShardedLLMConfig
from recunlearn.unlearn.base import register
from recunlearn.unlearn.partition import random_partition


@register("llm-sisa")
class LLMSISA(LLMUnlearner):
    """Random shards of prompt samples, one adapter each, averaged predictions (Bourtoule et al.)."""

    Config = ShardedLLMConfig

    def _partition(self) -> np.ndarray:
        result = random_partition(len(self.train), self.n_adapters, self.config.partition_seed)
        self.partition_info = result.summary()
        return result.assignment

    def _logits(self, token_ids, samples):
        return self._output_average(token_ids)
