"""The plain influence function (Koh & Liang, 2017) as an unlearning baseline: one Newton step on
every embedding row for the removed data's gradient, without spillover or pruning."""

from __future__ import annotations

import numpy as np

from recunlearn.unlearn.base import register
from recunlearn.unlearn.influence.unlearner import InfluenceConfig, InfluenceUnlearner


class InfluenceFunctionConfig(InfluenceConfig):
    """The plain influence function has only the solver settings."""


@register("if")
class InfluenceFunction(InfluenceUnlearner):
    """Influence of the removed rows on all parameters; the graph change is ignored in the gradient."""

    Config = InfluenceFunctionConfig

    def kept_rows(self, removed, before, graph_full):
        return np.arange(before.n_users), np.arange(before.n_items), {}
