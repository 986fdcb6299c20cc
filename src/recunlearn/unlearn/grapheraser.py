"""GraphEraser (Chen et al., CCS 2022) for recommenders: BEKM (balanced embedding k-means) over the
nodes of the user-item graph, one model per shard graph, predictions averaged.

Nodes of one side (users by default) are clustered on the embeddings of a model pre-trained on all
training data, at most ceil(nodes / K) nodes per shard; each interaction (edge) goes to the shard of
its node, so every shard graph is a set of whole users with their items and no interaction is
dropped. Unlike RecEraser's user-based partition, node counts (not rows) are balanced.
"""

from __future__ import annotations

from typing import Literal

from recunlearn.unlearn.base import register
from recunlearn.unlearn.partition import PartitionResult, bekm_partition
from recunlearn.unlearn.sharded import EmbeddingShardedConfig, EmbeddingShardedUnlearner


class GraphEraserConfig(EmbeddingShardedConfig):
    """GraphEraser: BEKM node partition; averaging by default (or a learned / weighted aggregator)."""

    node: Literal["user", "item"] = "user"
    """Which nodes are clustered; the interactions follow them."""


@register("grapheraser")
class GraphEraser(EmbeddingShardedUnlearner):
    """Balanced embedding k-means (BEKM) shards of the graph, one model each, aggregated (Chen et al. 2022)."""

    Config = GraphEraserConfig

    def _partition(self) -> PartitionResult:
        users, items = self.partition_embeddings()
        embeddings, row_nodes = (
            (users, self.train.user) if self.config.node == "user" else (items, self.train.item)
        )
        return bekm_partition(
            embeddings,
            row_nodes,
            self.config.n_shards,
            self.config.partition_seed,
            self.config.iterations,
        )
