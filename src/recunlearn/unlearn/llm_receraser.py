"""RecEraser's user-based partition for the language-model recommender (as APA's paper extends it):
users are clustered by balanced k-means on the mean frozen representation of their prompts (capacity
``slack`` x samples / K, each user weighted by their number of samples), so all of a user's prompts
share one adapter; predictions are averaged (K forward passes)."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from recunlearn.errors import ConfigError
from recunlearn.unlearn._llm_common import LLMUnlearner, ShardedLLMConfig
from recunlearn.unlearn.base import register
from recunlearn.unlearn.partition import receraser_partition


class LLMRecEraserConfig(ShardedLLMConfig):
    """RecEraser on prompt samples: user-based balanced partition, averaged predictions."""

    iterations: int = Field(10, ge=1)
    """Rounds of the balanced k-means (assignment by the capped walk, then centre update)."""
    slack: float = Field(1.2, ge=1.0)
    """Capacity of a shard in multiples of samples / K (1.2 in RecEraser's reference code)."""


def user_representations(method: LLMUnlearner) -> tuple[np.ndarray, np.ndarray]:
    """Mean frozen representation of each user's training prompts, and each sample's user index."""
    users, row_user = np.unique(method.train.user, return_inverse=True)
    if len(users) < method.n_adapters or (len(users) == 1 and users[0] == ""):
        raise ConfigError(
            f"{method.name} partitions by user, but the samples name {len(users)} user(s) "
            f"for {method.n_adapters} shards (TALLRec JSON records need a 'user' field)"
        )
    embeddings = method.representations(method.train).astype(np.float64)
    sums = np.zeros((len(users), embeddings.shape[1]))
    np.add.at(sums, row_user, embeddings)
    return sums / np.bincount(row_user)[:, None], row_user


@register("llm-receraser")
class LLMRecEraser(LLMUnlearner):
    """User-based balanced shards of prompt samples, one adapter each, averaged predictions (Chen et al.)."""

    Config = LLMRecEraserConfig

    def _partition(self) -> np.ndarray:
        user_emb, row_user = user_representations(self)
        result = receraser_partition(
            user_emb,
            np.zeros((1, 1)),
            row_user,
            np.zeros(len(row_user), np.int64),
            self.n_adapters,
            "user",
            self.config.partition_seed,
            self.config.iterations,
            self.config.slack,
        )
        self.partition_info = result.summary()
        return result.assignment

    def _logits(self, token_ids, samples):
        return self._output_average(token_ids)
