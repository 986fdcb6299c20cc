"""How shard models are combined into one recommender.

The aggregators, chosen by a typed config (``kind``):

- ``average``: the mean of the shard models' probabilities (SISA, GraphEraser).
- ``attention``: RecEraser's learned attention over the shard models' embeddings. Each shard's user
  (item) representation is mapped by its own linear transform into a common space; an attention
  network weighs the K transformed representations per user (item); the score is the dot product of
  the aggregated user and item representations. Trained after the shards, with the shards frozen, on
  the current training rows; a deletion changes a shard and the rows, so it is retrained from its seed
  (seconds: it has K d^2 parameters per side and trains on frozen inputs).
- ``owner``: each user is scored by the shards that hold the user's training rows (the mean of their
  logits, weighted by how many of the user's rows each holds; with a user partition, the one shard
  that holds the user). Nothing is trained: after a deletion only the weights are recounted.
- ``foldin``: ``owner`` beside every other shard: each user is folded into the shards that hold none
  of the user's rows (an implicit least-squares solve against the shard's item vectors on the user's
  own rows), each shard's logits are standardised per user, and the owner-weighted mean is mixed
  with the mean over all shards. Nothing is trained: after a deletion the fold-ins are solved again
  (only in the retrained shards when the deleted rows were whole users').
- ``weighted``: a sample-dependent weighted mean: shard k's weight for user u is
  softmax_k(-tau * error of shard k on u's validation rows), APA's sample-adaptive weighting with the
  user's validation rows as the neighbours. After a deletion only the changed shards' errors are
  recomputed, unless the deletion also removed validation rows (then every shard's are).

Every aggregator is a pure function of the shard models, the data and its seed, so refitting it after a
deletion gives what fitting it from scratch on the remaining data gives.

While shards are quarantined (:mod:`recunlearn.unlearn.quarantine`) the average runs over the remaining
shards (empty ones are skipped the same way); every other aggregator was fitted on the shards it
combines, so it falls back to that plain average until the repair refits it. With every shard set
aside, :class:`~.popularity.PopularityFallback` serves the most popular remaining items.

One module per aggregator (its config and its class); :mod:`.base` holds what they share. A new
aggregator is one module here, its config in :data:`AggregatorConfig` and a line in
:func:`build_aggregator`.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from recunlearn.unlearn.aggregate.attention import AttentionAggregator, AttentionConfig
from recunlearn.unlearn.aggregate.average import AverageAggregator, AverageConfig
from recunlearn.unlearn.aggregate.base import (
    Aggregator,
    shard_probabilities,
    shard_probabilities_all,
)
from recunlearn.unlearn.aggregate.foldin import FoldInAggregator, FoldInConfig, fold_in
from recunlearn.unlearn.aggregate.owner import OwnerAggregator, OwnerConfig
from recunlearn.unlearn.aggregate.weighted import WeightedAggregator, WeightedConfig

AggregatorConfig = Annotated[
    AverageConfig | AttentionConfig | WeightedConfig | OwnerConfig | FoldInConfig,
    Field(discriminator="kind"),
]


def build_aggregator(
    config: AverageConfig | AttentionConfig | WeightedConfig | OwnerConfig | FoldInConfig,
) -> Aggregator:
    """The aggregator a config names."""
    if config.kind == "average":
        return AverageAggregator(config)
    if config.kind == "attention":
        return AttentionAggregator(config)
    if config.kind == "owner":
        return OwnerAggregator(config)
    if config.kind == "foldin":
        return FoldInAggregator(config)
    return WeightedAggregator(config)


__all__ = [
    "Aggregator",
    "AggregatorConfig",
    "AttentionAggregator",
    "AttentionConfig",
    "AverageAggregator",
    "AverageConfig",
    "FoldInAggregator",
    "FoldInConfig",
    "OwnerAggregator",
    "OwnerConfig",
    "WeightedAggregator",
    "WeightedConfig",
    "build_aggregator",
    "fold_in",
    "shard_probabilities",
    "shard_probabilities_all",
]
