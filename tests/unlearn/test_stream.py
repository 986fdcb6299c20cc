"""Streams of deletion requests: ``forget_many`` retrains each affected shard once and gives exactly
what processing the requests one by one gives; shards that become empty are handled."""

import numpy as np
import pytest
import torch

from recunlearn.data import DeletionRequest, user_deletion
from recunlearn.testing import FAST_TRAIN
from recunlearn.unlearn import get_method

STREAM_CONFIGS = {
    "sisa": {"n_shards": 3, "train": {**FAST_TRAIN, "max_epochs": 3}},
    "receraser": {
        "n_shards": 3,
        "train": {**FAST_TRAIN, "max_epochs": 3},
        "aggregator": {"kind": "attention", "epochs": 1, "batch_size": 512},
    },
    "grapheraser": {
        "n_shards": 3,
        "train": {**FAST_TRAIN, "max_epochs": 3},
        "aggregator": {"kind": "weighted"},
    },
}


def count_shard_training(model):
    calls = []
    original = model._train_shards
    model._train_shards = lambda shards: (calls.append(list(shards)), original(shards))[1]
    return calls


@pytest.mark.parametrize("method", sorted(STREAM_CONFIGS))
def test_stream_of_100_single_interactions_batched_equals_one_by_one(tiny_split, method):
    config = STREAM_CONFIGS[method]
    fitted = get_method(method)(config).fit(tiny_split.train, tiny_split.valid)
    batched = get_method(method)(config).fit(tiny_split.train, tiny_split.valid)
    train = tiny_split.train
    rows = np.random.default_rng(1).choice(len(train), 100, replace=False)
    requests = [
        DeletionRequest.from_rows(train, [r], request_id=f"r{n}") for n, r in enumerate(rows)
    ]
    affected = sorted(np.unique(batched.assignment[rows]).tolist())
    calls = count_shard_training(batched)
    reports = batched.forget_many(requests)
    assert calls == [affected], "each affected shard is retrained exactly once, in one batch"
    assert [r.request_id for r in reports] == [q.request_id for q in requests]
    assert all(r.removed_rows == 1 and r.details["retrained_shards"] == affected for r in reports)
    assert len(batched.train) == len(train) - 100
    for request in requests:
        fitted.forget(request)
    for k in range(3):
        for name, value in batched.models[k].state_dict().items():
            assert torch.equal(value, fitted.models[k].state_dict()[name]), (
                f"{method} shard {k} {name}"
            )
    test = tiny_split.test
    np.testing.assert_array_equal(
        batched.score_index(test.user, test.item), fitted.score_index(test.user, test.item)
    )
    again = batched.forget_many(requests[:5])
    assert all(r.noop for r in again)


@pytest.mark.parametrize(
    "aggregator",
    [
        {"kind": "average"},
        {"kind": "weighted"},
        {"kind": "attention", "epochs": 1, "batch_size": 512},
    ],
)
def test_a_shard_that_becomes_empty(tiny_split, aggregator):
    config = {"n_shards": 3, "train": {**FAST_TRAIN, "max_epochs": 3}, "aggregator": aggregator}
    model = get_method("grapheraser")(config).fit(tiny_split.train, tiny_split.valid)
    train = model.train
    users_of_shard_0 = np.unique(train.user[model.assignment == 0])
    ids = train.users.ids[users_of_shard_0].tolist()
    reports = model.forget_many([user_deletion(train, users=[u]) for u in ids])
    assert reports[0].details["retrained_shards"] == [0] and reports[0].details["empty_shards"] == [
        0
    ]
    part = reports[0].parts[0]
    assert (
        part.rows_after == 0
        and part.action == "retrained"
        and part.data_hash_after != part.data_hash_before
    )
    assert model.models[0] is None and model.shard_sizes()[0] == 0
    test = tiny_split.test
    scores = model.score_index(test.user, test.item)
    assert np.isfinite(scores).all()
    assert np.isfinite(model.score_all(np.array([0, 1]))).all()
    # the stream goes on: a later request on another shard
    other = model.train.users.ids[model.train.user[model.assignment == 1][0]]
    report = model.forget(user_deletion(model.train, users=[other]))
    assert report.details["retrained_shards"] == [1] and model.models[0] is None


def test_rows_two_batched_requests_name_are_reported_once(tiny_split):
    """As one by one: the first request removes a shared row, the second removes only what is left."""
    model = get_method("sisa")(STREAM_CONFIGS["sisa"]).fit(tiny_split.train, tiny_split.valid)
    train = tiny_split.train
    first = DeletionRequest.from_rows(train, [0, 1], request_id="first")
    second = DeletionRequest.from_rows(train, [1, 2], request_id="second")
    same = DeletionRequest.from_rows(train, [0], request_id="same")
    reports = model.forget_many([first, second, same])
    assert [r.removed_rows for r in reports] == [2, 1, 0] and [r.noop for r in reports] == [
        False,
        False,
        True,
    ]
    assert len(model.train) == len(train) - 3
