"""SISA (Bourtoule et al., S&P 2021): random disjoint shards, one model each, scores averaged."""

from __future__ import annotations

import numpy as np

from recunlearn.unlearn.base import register
from recunlearn.unlearn.partition import random_partition
from recunlearn.unlearn.sharded import ShardedConfig, ShardedUnlearner


class SISAConfig(ShardedConfig):
    """SISA: random balanced shards (sizes differ by at most one row)."""


@register("sisa")
class SISA(ShardedUnlearner):
    """Random disjoint shards, one model each, scores averaged (Bourtoule et al. 2021)."""

    Config = SISAConfig

    def _partition(self) -> np.ndarray:
        return random_partition(
            len(self.train), self.config.n_shards, self.config.partition_seed
        ).assignment
