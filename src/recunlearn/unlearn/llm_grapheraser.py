"""GraphEraser's BEKM partition for the language-model recommender (as APA's paper extends it): user
nodes are clustered by balanced embedding k-means (at most ceil(users / K) users per shard) on the mean
frozen representation of their prompts; each prompt goes with its user; predictions are averaged."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from recunlearn.unlearn._llm_common import LLMUnlearner, ShardedLLMConfig
from recunlearn.unlearn.base import register
from recunlearn.unlearn.llm_receraser import user_representations
from recunlearn.unlearn.partition import bekm_partition


class LLMGraphEraserConfig(ShardedLLMConfig):
    """GraphEraser on prompt samples: BEKM over users, averaged predictions."""

    iterations: int = Field(10, ge=1)
    """Rounds of the balanced embedding k-means."""


@register("llm-grapheraser")
class LLMGraphEraser(LLMUnlearner):
    """BEKM shards of users' prompt samples, one adapter each, averaged predictions (Chen et al.)."""

    Config = LLMGraphEraserConfig

    def _partition(self) -> np.ndarray:
        user_emb, row_user = user_representations(self)
        result = bekm_partition(
            user_emb, row_user, self.n_adapters, self.config.partition_seed, self.config.iterations
        )
        self.partition_info = result.summary()
        return result.assignment

    def _logits(self, token_ids, samples):
        return self._output_average(token_ids)
