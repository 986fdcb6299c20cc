"""Measures of the three goals: utility (metrics), completeness (distance to retraining), efficiency (timing)."""

from recunlearn.evaluate.baselines import MostPopular
from recunlearn.evaluate.completeness import (
    completeness_report,
    membership_inference,
    pair_losses,
    parameter_distance,
    score_distance,
)
from recunlearn.evaluate.metrics import auc, auc_report, ranking_report, subset_masks

__all__ = [
    "MostPopular",
    "auc",
    "auc_report",
    "completeness_report",
    "membership_inference",
    "pair_losses",
    "parameter_distance",
    "ranking_report",
    "score_distance",
    "subset_masks",
]
