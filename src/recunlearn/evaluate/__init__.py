"""Measures of the three goals: utility (metrics), completeness (distance to retraining), efficiency (timing)."""

from recunlearn.evaluate.baselines import MostPopular
from recunlearn.evaluate.completeness import (
    completeness_report,
    membership_inference,
    pair_losses,
    parameter_distance,
    score_distance,
)
from recunlearn.evaluate.metrics import auc_report, ranking_report, subset_masks
from recunlearn.train.auc import roc_auc

__all__ = [
    "MostPopular",
    "auc_report",
    "completeness_report",
    "membership_inference",
    "pair_losses",
    "parameter_distance",
    "ranking_report",
    "roc_auc",
    "score_distance",
    "subset_masks",
]
