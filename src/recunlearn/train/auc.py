"""ROC-AUC by the Mann-Whitney rank statistic.

Early stopping evaluates AUC every epoch of every shard, and IFRU's guard twice per ``forget``;
scikit-learn's ``roc_auc_score`` spends most of its time validating inputs, so this counting form
(ties counted half, as scikit-learn does) is the one recunlearn uses: in both training loops, the
aggregators, the guards and ``recunlearn.evaluate``; a test checks it against scikit-learn.
"""

from __future__ import annotations

import numpy as np


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC-AUC of ``scores`` for binary ``labels``; NaN when only one class is present or a score is NaN.

    The Mann-Whitney count from two sorted halves: each positive scores against the negatives below
    it, plus half of those it ties with (as scikit-learn counts ties). Sorting scores alone, without
    an argsort, and binary searches of the positives among the negatives cost less than ranking all.
    """
    labels = np.asarray(labels) > 0
    scores = np.asarray(scores)
    positive, negative = np.sort(scores[labels]), np.sort(scores[~labels])
    if not len(positive) or not len(negative) or np.isnan(positive[-1]) or np.isnan(negative[-1]):
        return float("nan")  # NaN sorts last
    below = np.searchsorted(negative, positive, side="left")
    tied = below < len(negative)
    tied[tied] = negative[below[tied]] == positive[tied]  # only these positives tie with a negative
    ties = np.searchsorted(negative, positive[tied], side="right") - below[tied]
    return float((int(below.sum()) + int(ties.sum()) / 2) / (len(positive) * len(negative)))
