"""Measures of the three goals: utility (metrics), completeness (distance to retraining), efficiency (timing)."""

from recunlearn.evaluate.completeness import score_distance
from recunlearn.evaluate.metrics import auc, auc_report, ranking_report, subset_masks

__all__ = ["auc", "auc_report", "ranking_report", "score_distance", "subset_masks"]
