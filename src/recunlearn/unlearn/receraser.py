"""RecEraser (Chen et al., WWW 2022): balanced partitions that keep collaborative structure, one
model per shard, and a learned attention aggregator over the shard models' embeddings.

The partition clusters user, item or interaction embeddings of a model pre-trained on all training
data with a capacity cap of 1.2 n / K rows per shard (RecEraser's reference code) over T rounds of
balanced k-means. A deletion retrains the shards holding the removed rows, then the aggregator (it
is trained on the shard models and the remaining rows).

On BPR shards over a user partition the default aggregator is ``foldin`` instead: each user is
ranked by the shard model that holds the user's rows together with every other shard, into which
the user is folded by a least-squares solve on the user's own rows. Nothing is trained, so a
deletion refits the shard and the fold-ins (a batched solve), where the attention's refit alone
costs more than retraining the whole MF model; docs/exact.md compares the aggregators.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Literal

from pydantic import Field, model_validator

from recunlearn.unlearn.aggregate import AggregatorConfig, AttentionConfig, FoldInConfig
from recunlearn.unlearn.base import register
from recunlearn.unlearn.executors import ShardJob
from recunlearn.unlearn.partition import PartitionResult, receraser_partition
from recunlearn.unlearn.sharded import EmbeddingShardedConfig, EmbeddingShardedUnlearner

SHARD_L2_FACTOR = 5.0
"""How much heavier a BPR shard's L2 penalty is than ``train.l2`` by default: a shard learns from
about 1/K of the rows; on ML-100K implicit (K=10, user partition) a heavier penalty ranked a little
better on average over seeds, by less than the seeds differ."""


class RecEraserConfig(EmbeddingShardedConfig):
    """RecEraser: user-, item- or interaction-based balanced partition and attention aggregation."""

    n_shards: int = Field(10, ge=1)
    """Number of shards K (RecEraser's experiments use 10)."""
    partition: Literal["user", "item", "interaction"] = "user"
    """What is clustered: users (all of a user's rows in one shard, so forgetting a user retrains one
    shard), items, or interactions (user and item embeddings concatenated)."""
    slack: float = Field(1.2, ge=1.0)
    """Capacity cap of a shard, in multiples of rows / K (1.2 in RecEraser's reference code)."""
    aggregator: AggregatorConfig | None = None
    """None: 'foldin' for BPR shards over a user partition, else RecEraser's attention; 'attention',
    'average', 'weighted', 'owner' and 'foldin' can be named."""
    shard_l2: Annotated[float, Field(ge=0)] | None = None
    """L2 penalty of each shard's model. None: ``train.l2`` x :data:`SHARD_L2_FACTOR` for BPR shards
    (a shard holds about 1/K of the rows and needs more regularisation than the full model),
    ``train.l2`` for BCE."""

    @model_validator(mode="after")
    def _default_aggregator(self) -> RecEraserConfig:
        if self.aggregator is None:
            by_user = self.train.loss == "bpr" and self.partition == "user"
            self.aggregator = FoldInConfig() if by_user else AttentionConfig(loss=self.train.loss)
        return self


@register("receraser")
class RecEraser(EmbeddingShardedUnlearner):
    """Collaboration-preserving balanced shards, one model each, learned attention aggregation (Chen et al. 2022)."""

    Config = RecEraserConfig

    def shard_l2(self) -> float:
        if self.config.shard_l2 is not None:
            return self.config.shard_l2
        return self.config.train.l2 * (SHARD_L2_FACTOR if self.config.train.loss == "bpr" else 1)

    def shard_job(self, shard: int) -> ShardJob:
        job = super().shard_job(shard)
        return replace(
            job, train_config=job.train_config.model_copy(update={"l2": self.shard_l2()})
        )

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
