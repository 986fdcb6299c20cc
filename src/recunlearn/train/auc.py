"""ROC-AUC by the Mann-Whitney rank statistic.

Early stopping evaluates AUC every epoch of every shard, and IFRU's guard twice per ``forget``;
scikit-learn's ``roc_auc_score`` spends most of its time validating inputs, so this rank form (ties
counted half, as scikit-learn does) is used in the training loop and by ``recunlearn.evaluate.auc``;
a test checks the two agree.
"""

from __future__ import annotations

import numpy as np


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC-AUC of ``scores`` for binary ``labels``; NaN when only one class is present or a score is NaN.

    One sort and the tie groups found on the sorted scores (each group's rows get its average
    rank): less work than ``scipy.stats.rankdata``'s general ranking.
    """
    labels = np.asarray(labels) > 0
    scores = np.asarray(scores)
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0 or np.isnan(scores).any():
        return float("nan")
    order = np.argsort(scores)
    ordered = scores[order]
    starts = np.flatnonzero(np.concatenate([[True], ordered[1:] != ordered[:-1]]))
    sizes = np.diff(np.append(starts, len(ordered)))
    average_rank = np.repeat(starts + (sizes + 1) / 2, sizes)  # 1-based ranks starts+1 .. starts+size
    return float((average_rank[labels[order]].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
