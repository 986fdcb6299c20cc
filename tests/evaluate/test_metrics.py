"""Metrics against hand-computed answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recunlearn.data import Interactions
from recunlearn.evaluate import auc_report, ranking_report, roc_auc, subset_masks


class TableScorer:
    """Scores from a fixed users x items matrix."""

    def __init__(self, matrix):
        self.matrix = np.asarray(matrix, dtype=np.float32)

    def score_index(self, users, items):
        return self.matrix[users, items]

    def score_all(self, users):
        return self.matrix[users]


def table(rows, users=("a", "b"), items=("x", "y", "z", "w")):
    frame = pd.DataFrame(rows, columns=["user", "item", "label"])
    from recunlearn.data import Vocabulary

    return Interactions.from_frame(
        frame,
        label="label",
        rating=None,
        timestamp=None,
        users=Vocabulary(list(users)),
        items=Vocabulary(list(items)),
    )


def test_auc_undefined_with_one_class():
    assert np.isnan(roc_auc([1, 1], [0.2, 0.3]))
    assert roc_auc([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8]) == 1.0


def test_or_and_subsets():
    test = table([("a", "x", 1), ("a", "y", 0), ("b", "z", 1), ("b", "w", 0)])
    deleted = table([("a", "z", 1)])
    masks = subset_masks(test, deleted)
    assert masks["or"].tolist() == [True, True, True, False]
    assert masks["and"].tolist() == [False, False, False, False]
    scorer = TableScorer([[0.9, 0.1, 0.5, 0.5], [0.5, 0.5, 0.8, 0.3]])
    report = auc_report(scorer, test, deleted)
    assert report["auc"] == 1.0 and report["auc_or"] == 1.0 and np.isnan(report["auc_and"])


def test_ranking_metrics_mask_training_items():
    train = table([("a", "x", 1)])
    test = table([("a", "y", 1), ("a", "z", 0), ("b", "w", 1)])
    # user a: x (seen, masked) scores highest, then z (not relevant), then y; user b: w ranks 2nd
    scorer = TableScorer([[0.9, 0.5, 0.7, 0.1], [0.9, 0.1, 0.1, 0.5]])
    report = ranking_report(scorer, train, test, k=2)
    assert report["hit@2"] == 1.0
    assert report["recall@2"] == 1.0
    assert report["ndcg@2"] == pytest.approx(1 / np.log2(3))
    top1 = ranking_report(scorer, train, test, k=1)
    assert top1["recall@1"] == 0.0


def test_recall_divides_by_every_relevant_item_and_nan_scores_give_nan():
    test = table([("a", "x", 1), ("a", "y", 1), ("a", "z", 1), ("b", "w", 1)])
    # user a: 3 relevant, top 2 = x, y (both relevant); user b: w ranks 4th
    scorer = TableScorer([[0.9, 0.8, 0.1, 0.2], [0.9, 0.8, 0.7, 0.1]])
    report = ranking_report(scorer, table([]), test, k=2)
    assert report["recall@2"] == pytest.approx((2 / 3 + 0) / 2), (
        "2 of a's 3 relevant items, not 2 of min(3, k)"
    )
    assert report["ndcg@2"] == pytest.approx(0.5), "a's top 2 is ideal"
    broken = TableScorer([[np.nan, 0.8, 0.1, 0.2], [0.9, 0.8, 0.7, 0.1]])
    assert all(np.isnan(v) for v in ranking_report(broken, table([]), test, k=2).values())


def test_rank_auc_agrees_with_scikit_learn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 5000)
    scores = np.round(rng.normal(labels * 0.5, 1.0), 1)  # rounding makes many ties
    assert roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert np.isnan(roc_auc(labels, np.where(np.arange(5000) == 7, np.nan, scores)))
    assert np.isnan(roc_auc(np.ones(10), scores[:10]))


def test_masked_training_items_are_never_hits_even_when_k_reaches_them():
    """With k at least the items left unmasked, the masked ones fill the top k: a test row that repeats
    a training pair must not count as a hit there either (it can never be recommended)."""
    train, test = table([("a", "x", 1)]), table([("a", "x", 1)])
    scorer = TableScorer([[0.1, 0.9, 0.8, 0.7], [0.1, 0.2, 0.3, 0.4]])
    for k in (1, 3, 4):
        report = ranking_report(scorer, train, test, k=k)
        assert (
            report[f"hit@{k}"] == 0.0
            and report[f"recall@{k}"] == 0.0
            and report[f"ndcg@{k}"] == 0.0
        )


def test_a_relevant_item_scored_plus_infinity_is_a_hit():
    """Masked training items are told apart by the mask, not by a finite score: a scorer returning
    logits may give an unmasked item +inf, and ranked first it is a hit."""
    train, test = table([("a", "y", 1)]), table([("a", "x", 1)])
    scorer = TableScorer([[np.inf, 0.9, 0.8, 0.7], [0.1, 0.2, 0.3, 0.4]])
    assert ranking_report(scorer, train, test, k=2) == {
        "recall@2": 1.0,
        "ndcg@2": 1.0,
        "hit@2": 1.0,
        "mrr@2": 1.0,
        "coverage@2": 0.5,
    }
