"""SCIF (Li et al., "Selective and collaborative influence function for efficient recommendation
unlearning") as the IFRU paper runs it: influence on the direct user/item embeddings only."""

from __future__ import annotations

import numpy as np

from recunlearn.unlearn.base import register
from recunlearn.unlearn.influence.unlearner import InfluenceConfig, InfluenceUnlearner


class SCIFConfig(InfluenceConfig):
    """SCIF has only the solver settings."""


@register("scif")
class SCIF(InfluenceUnlearner):
    """Influence restricted to the rows of the users and items the removed data names; no spillover."""

    Config = SCIFConfig

    def kept_rows(self, removed, before, graph_full):
        return np.unique(removed.user), np.unique(removed.item), {}
