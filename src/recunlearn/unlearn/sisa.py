"""SISA (Bourtoule et al., S&P 2021): random disjoint shards, one model each, scores averaged.

The shards are random rows (SISA's partition) or random whole users (``partition = "user"``): with
random rows every user has rows in nearly every shard, so forgetting a user retrains them all and no
quarantine can set the user aside; by user, forgetting a user touches one shard."""

from __future__ import annotations

from typing import Literal

import numpy as np

from recunlearn.unlearn.base import register
from recunlearn.unlearn.partition import random_partition, user_partition
from recunlearn.unlearn.sharded import ShardedConfig, ShardedUnlearner


class SISAConfig(ShardedConfig):
    """SISA: random balanced shards of rows (sizes differ by at most one row) or of whole users."""

    partition: Literal["random", "user"] = "random"
    """'random': rows dealt at random (SISA's); 'user': whole users dealt at random, balanced in rows
    (sizes differ by at most one user's rows), so a user's deletion touches one shard."""


@register("sisa")
class SISA(ShardedUnlearner):
    """Random disjoint shards, one model each, scores averaged (Bourtoule et al. 2021)."""

    Config = SISAConfig

    def _partition(self) -> np.ndarray:
        if self.config.partition == "user":
            return user_partition(
                self.train.user, self.config.n_shards, self.config.partition_seed
            ).assignment
        return random_partition(
            len(self.train), self.config.n_shards, self.config.partition_seed
        ).assignment
