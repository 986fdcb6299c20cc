"""Completeness measures against hand-made scorers with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recunlearn.data import Interactions
from recunlearn.evaluate.completeness import (
    completeness_report,
    membership_inference,
    pair_losses,
    parameter_distance,
    score_distance,
)


class TableScorer:
    def __init__(self, matrix):
        self.matrix = np.asarray(matrix, dtype=np.float32)

    def score_index(self, users, items):
        return self.matrix[users, items]

    def score_all(self, users):
        return self.matrix[users]


def rows(pairs, labels):
    frame = pd.DataFrame(
        {"user": [f"u{u}" for u, _ in pairs], "item": [f"i{i}" for _, i in pairs], "label": labels}
    )
    data = Interactions.from_frame(frame, label="label", rating=None, timestamp=None)
    return data


def grid():
    """Every (user, item) of a 4 x 4 grid, so that all tables share vocabularies."""
    return rows(
        [(u, i) for u in range(4) for i in range(4)],
        [float((u + i) % 2) for u in range(4) for i in range(4)],
    )


def test_score_distance_and_losses():
    data = grid()
    a = TableScorer(np.full((4, 4), 0.5))
    b = TableScorer(np.full((4, 4), 0.75))
    assert score_distance(a, b, data) == 0.25
    np.testing.assert_allclose(pair_losses(a, data), np.log(2), rtol=1e-6)


def test_membership_inference_finds_members_by_loss():
    data = grid()
    members = data.take(np.arange(8))
    others = data.take(np.arange(8, 16))
    confident = np.where(data.label.reshape(4, 4) > 0, 0.95, 0.05)  # the right answer everywhere
    matrix = np.full((4, 4), 0.5)
    matrix[:2] = confident[:2]  # users 0-1 (the members) are fitted, users 2-3 not
    attack = membership_inference(
        TableScorer(matrix), members, others, removed=members.take(np.arange(3))
    )
    assert attack["attack_auc"] == 1.0 and attack["removed_member_rate"] == 1.0
    forgot = membership_inference(
        TableScorer(matrix), members, others, removed=others.take(np.arange(3))
    )
    assert forgot["removed_member_rate"] == 0.0


def test_completeness_report_is_zero_against_itself():
    data = grid()
    model = TableScorer(np.random.default_rng(0).random((4, 4)))
    report = completeness_report(
        model,
        model,
        data.take(np.arange(4)),
        data.take(np.arange(4)),
        data.take(np.arange(8, 16)),
        data.take(np.arange(4, 8)),
    )
    assert report["dist_removed"] == 0 and report["dist_test"] == 0 and report["mia_gap"] == 0
    assert np.isnan(report["param_distance"]), "table scorers have no embeddings"
    assert 0 <= report["auc_removed"] <= 1


def test_parameter_distance_of_models(tiny_split):
    from recunlearn.unlearn import get_method

    fast = {"max_epochs": 2, "patience": 1, "batch_size": 256, "lr": 0.01}
    a = get_method("retrain")(train=fast).fit(tiny_split.train, None)
    b = get_method("retrain")(train={**fast, "seed": 1}).fit(tiny_split.train, None)
    assert parameter_distance(a, a) == 0.0 and parameter_distance(a, b) > 0.1
    assert np.isnan(parameter_distance(a, TableScorer(np.zeros((2, 2)))))


def test_a_nan_loss_makes_the_attack_undefined_not_perfectly_forgotten():
    """A NaN loss compares False with every threshold, which read as 'no removed row is a member':
    a diverged model looked like perfect forgetting."""
    data = grid()
    matrix = np.full((4, 4), 0.5)
    matrix[3, 3] = np.nan  # one test row
    attack = membership_inference(
        TableScorer(matrix),
        data.take(np.arange(8)),
        data.take(np.arange(8, 16)),
        removed=data.take(np.arange(3)),
    )
    assert all(np.isnan(v) for v in attack.values())
