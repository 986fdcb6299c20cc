"""RecEraser (Chen et al., WWW 2022): balanced partitions that keep collaborative structure, one
model per shard, and a learned attention aggregator over the shard models' embeddings.

The partition clusters user, item or interaction embeddings of a model pre-trained on all training
data with a capacity cap of 1.2 n / K rows per shard (RecEraser's reference code) over T rounds of
balanced k-means. A deletion retrains the shards holding the removed rows, then the aggregator (it
is trained on the shard models and the remaining rows).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from recunlearn.unlearn.aggregate import AggregatorConfig, AttentionConfig
from recunlearn.unlearn.base import register
from recunlearn.unlearn.partition import PartitionResult, receraser_partition
from recunlearn.unlearn.sharded import EmbeddingShardedConfig, EmbeddingShardedUnlearner


class RecEraserConfig(EmbeddingShardedConfig):
    """RecEraser: user-, item- or interaction-based balanced partition and attention aggregation."""

    n_shards: int = Field(10, ge=1)
    """Number of shards K (RecEraser's experiments use 10)."""
    partition: Literal["user", "item", "interaction"] = "user"
    """What is clustered: users (all of a user's rows in one shard, so forgetting a user retrains one
    shard), items, or interactions (user and item embeddings concatenated)."""
    slack: float = Field(1.2, ge=1.0)
    """Capacity cap of a shard, in multiples of rows / K (1.2 in RecEraser's reference code)."""
    aggregator: AggregatorConfig = Field(default_factory=AttentionConfig)
    """RecEraser's attention aggregator by default; 'average' and 'weighted' for ablations."""


@register("receraser")
class RecEraser(EmbeddingShardedUnlearner):
    """Collaboration-preserving balanced shards, one model each, learned attention aggregation (Chen et al. 2022)."""

    Config = RecEraserConfig

    def _partition(self) -> PartitionResult:
        users, items = self.partition_embeddings()
        return receraser_partition(
            users,
            items,
            self.train.user,
            self.train.item,
            self.config.n_shards,
            self.config.partition,
            self.config.partition_seed,
            self.config.iterations,
            self.config.slack,
        )
