"""RecEraser's user-based partition for the language-model recommender (as APA's paper extends it):
users are clustered by balanced k-means on the mean frozen representation of their prompts (capacity
``slack`` x samples / K, each user weighted by their number of samples), so all of a user's prompts
share one adapter; predictions are averaged (K forward passes)."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from recunlearn.unlearn._llm_common import ShardedLLMUnlearner, UserShardedLLMConfig
from recunlearn.unlearn.base import register
from recunlearn.unlearn.partition import PartitionResult, receraser_partition


class LLMRecEraserConfig(UserShardedLLMConfig):
    """RecEraser on prompt samples: user-based balanced partition, averaged predictions."""

    slack: float = Field(1.2, ge=1.0)
    """Capacity of a shard in multiples of samples / K (1.2 in RecEraser's reference code)."""


@register("llm-receraser")
class LLMRecEraser(ShardedLLMUnlearner):
    """User-based balanced shards of prompt samples, one adapter each, averaged predictions (Chen et al.)."""

    Config = LLMRecEraserConfig

    def _partition(self) -> PartitionResult:
        user_emb, row_user = self.user_representations()
        no_items = np.zeros(len(row_user), np.int64)  # clustered by user: items play no part
        return receraser_partition(
            user_emb,
            np.zeros((1, 1)),
            row_user,
            no_items,
            self.n_parts,
            "user",
            self.config.partition_seed,
            self.config.iterations,
            self.config.slack,
        )
