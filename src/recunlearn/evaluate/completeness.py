"""Completeness: how close an unlearned model is to the model retrained without the data.

Always measured against the retrained model (not the original): the goal is to be what training
without the data would give.
"""

from __future__ import annotations

import numpy as np

from recunlearn.data.interactions import Interactions
from recunlearn.evaluate.metrics import Scorer


def score_distance(model: Scorer, reference: Scorer, data: Interactions) -> float:
    """Mean absolute difference of the two models' scores on ``data``'s pairs."""
    if len(data) == 0:
        return float("nan")
    a = model.score_index(data.user, data.item)
    b = reference.score_index(data.user, data.item)
    return float(np.mean(np.abs(a.astype(np.float64) - b)))
