"""ROC-AUC by the Mann-Whitney rank statistic.

Early stopping evaluates AUC every epoch of every shard; scikit-learn's ``roc_auc_score`` spends most
of its time validating inputs, so this rank form (ties counted half, as scikit-learn does) is used
in the training loop and by ``recunlearn.evaluate.auc``; a test checks the two agree.
"""

from __future__ import annotations

import numpy as np


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC-AUC of ``scores`` for binary ``labels``; NaN when only one class is present."""
    from scipy.stats import rankdata  # imported here: scipy.stats costs ~2 s in every spawned shard worker

    labels = np.asarray(labels) > 0
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(np.asarray(scores, dtype=np.float64))
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
