"""A fit or forget that fails half-way leaves the model as it was: nothing acknowledged as removed
while the model still holds it, and the request can be retried."""

import numpy as np
import pandas as pd
import pytest
import torch

from recunlearn.data import DeletionRequest, Interactions, Vocabulary
from recunlearn.errors import NotFittedError, RecUnlearnError
from recunlearn.testing import FAST_TRAIN
from recunlearn.unlearn import get_method, retrain, sharded
from recunlearn.unlearn.aggregate import WeightedAggregator


class Boom(RuntimeError):
    pass


def _fail(*args, **kwargs):
    raise Boom("injected failure")


def _weights(method):
    return [
        None if m is None else {k: v.clone() for k, v in m.state_dict().items()}
        for m in method.models
    ]


def _same_weights(a, b):
    return all(
        (x is None and y is None) or all(torch.equal(x[k], y[k]) for k in x) for x, y in zip(a, b)
    )


@pytest.mark.parametrize("where", ["shard training", "aggregator refit"])
def test_a_failed_sharded_forget_changes_nothing_and_can_be_retried(tiny_split, monkeypatch, where):
    method = get_method("sisa")(
        {"n_shards": 3, "train": FAST_TRAIN, "aggregator": {"kind": "weighted"}}
    )
    method.fit(tiny_split.train, tiny_split.valid)
    test = tiny_split.test
    train, assignment, info = method.train, method.assignment.copy(), list(method.shard_info)
    weights, scores = _weights(method), method.score_index(test.user, test.item)
    errors = method.aggregator.errors.copy()
    request = DeletionRequest(users=[str(tiny_split.train.users.ids[3])])
    with monkeypatch.context() as patch:
        if where == "shard training":
            patch.setattr(sharded, "train_shard", _fail)
        else:  # after the shards were retrained: the aggregator's refit fails half-way through

            def fit_then_fail(self, *args):
                self.errors[:] = -1.0
                raise Boom("injected failure")

            patch.setattr(WeightedAggregator, "fit", fit_then_fail)
        with pytest.raises(Boom):
            method.forget(request)
    assert (
        method.train is train
        and np.array_equal(method.assignment, assignment)
        and method.shard_info == info
    )
    assert _same_weights(_weights(method), weights) and np.array_equal(
        method.aggregator.errors, errors, equal_nan=True
    )
    np.testing.assert_array_equal(method.score_index(test.user, test.item), scores)
    report = method.forget(
        request
    )  # the retry removes the rows (was: a no-op, the rows already gone)
    assert not report.noop and report.removed_rows == int((train.user == 3).sum()) > 0


def test_a_failed_retrain_forget_keeps_the_rows(tiny_split, monkeypatch):
    method = get_method("retrain")({"train": FAST_TRAIN}).fit(tiny_split.train, tiny_split.valid)
    model, request = method.model, DeletionRequest(users=[str(tiny_split.train.users.ids[3])])
    with monkeypatch.context() as patch:
        patch.setattr(retrain, "fit_model", _fail)
        with pytest.raises(Boom):
            method.forget(request)
    assert method.train is tiny_split.train and method.model is model
    assert method.forget(request).removed_rows > 0


def test_a_failed_fit_leaves_the_method_unfitted_or_as_its_last_fit(tiny_split, monkeypatch):
    method = get_method("sisa")({"n_shards": 3, "train": FAST_TRAIN})
    with monkeypatch.context() as patch:
        patch.setattr(sharded, "train_shard", _fail)
        with pytest.raises(Boom):
            method.fit(tiny_split.train, tiny_split.valid)
        with pytest.raises(NotFittedError):  # was: AttributeError, no 'aggregator'
            method.score_index([0], [0])
    method.fit(tiny_split.train, tiny_split.valid)
    scores = method.score_index(tiny_split.test.user, tiny_split.test.item)
    with monkeypatch.context() as patch:
        patch.setattr(sharded, "train_shard", _fail)
        with pytest.raises(Boom):
            method.fit(tiny_split.valid, None)
    assert method.train is tiny_split.train
    np.testing.assert_array_equal(
        method.score_index(tiny_split.test.user, tiny_split.test.item), scores
    )


def test_a_shard_whose_touched_validation_has_one_class_early_stops_on_all_of_it():
    """GraphEraser's shards hold whole users; deleting u4 leaves its shard's touched validation rows
    one class, which made the shard's retraining (and so the forget) fail."""
    users = Vocabulary.from_values([f"u{i}" for i in range(6)], kind="user")
    items = Vocabulary.from_values([f"i{i}" for i in range(6)], kind="item")

    def table(rows):
        frame = pd.DataFrame(rows, columns=["user", "item", "label"])
        return Interactions.from_frame(
            frame, rating=None, label="label", timestamp=None, users=users, items=items
        )

    train = table([(f"u{u}", f"i{i}", float((u + i) % 2)) for u in range(6) for i in range(6)])
    valid = table(
        [
            ("u0", "i0", 1.0),
            ("u1", "i1", 0.0),
            ("u3", "i0", 0.0),
            ("u4", "i1", 1.0),
            ("u5", "i2", 0.0),
        ]
    )
    method = get_method("grapheraser")({"n_shards": 2, "train": FAST_TRAIN})
    method.use_embeddings(np.array([[0, 0]] * 3 + [[10, 10]] * 3, float), np.zeros((6, 2))).fit(
        train, valid
    )
    shard = int(method.assignment[train.user == 4][0])
    report = method.forget(DeletionRequest(users=["u4"]))
    assert report.details["retrained_shards"] == [shard]
    data = method.shard_data(shard)
    assert len(method.valid) == len(valid) - 1  # u4's validation row left with u4
    assert (
        method.shard_validation_data(data) is method.valid
    )  # touched: u3/i0 and u5/i2, both negative
    assert len(np.unique(method.shard_validation_data(method.shard_data(1 - shard)).label)) == 2


def test_a_request_that_would_leave_one_validation_class_is_refused_before_anything_changes(
    tiny_split,
):
    """Early stopping on AUC needs both classes: removing every liked validation row is refused with a
    clear error, the training and validation data untouched (not a half-done forget)."""
    method = get_method("sisa")({"n_shards": 2, "train": FAST_TRAIN}).fit(
        tiny_split.train, tiny_split.valid
    )
    valid = tiny_split.valid
    request = DeletionRequest.from_rows(valid, valid.label > 0)
    train, weights = method.train, _weights(method)
    with pytest.raises(RecUnlearnError, match="one label class only"):
        method.forget(request)
    assert (
        method.train is train and method.valid is valid and _same_weights(_weights(method), weights)
    )
    assert not method._forgotten
