"""GraphEraser's BEKM partition for the language-model recommender (as APA's paper extends it): user
nodes are clustered by balanced embedding k-means (at most ceil(users / K) users per shard) on the mean
frozen representation of their prompts; each prompt goes with its user; predictions are averaged."""

from __future__ import annotations

from recunlearn.unlearn._llm_common import ShardedLLMUnlearner, UserShardedLLMConfig
from recunlearn.unlearn.base import register
from recunlearn.unlearn.partition import PartitionResult, bekm_partition


class LLMGraphEraserConfig(UserShardedLLMConfig):
    """GraphEraser on prompt samples: BEKM over users, averaged predictions."""


@register("llm-grapheraser")
class LLMGraphEraser(ShardedLLMUnlearner):
    """BEKM shards of users' prompt samples, one adapter each, averaged predictions (Chen et al.)."""

    Config = LLMGraphEraserConfig

    def _partition(self) -> PartitionResult:
        user_emb, row_user = self.user_representations()
        return bekm_partition(
            user_emb, row_user, self.n_parts, self.config.partition_seed, self.config.iterations
        )
