"""The implicit-feedback protocol: positives, a seeded per-user split, and the fake-user attack."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recunlearn.data import (
    Interactions,
    fake_positive_attack,
    fake_user_attack,
    implicit_protocol,
    per_user_split,
    positive_interactions,
)
from recunlearn.errors import ConfigError, DataError
from tests.conftest import make_tiny


def test_positives_are_the_ratings_above_the_threshold_or_every_row(tiny):
    liked = positive_interactions(tiny, 3.0)
    assert len(liked) == int((tiny.rating > 3).sum()) and (liked.label == 1).all()
    assert len(positive_interactions(tiny, None)) == len(tiny)


def test_a_table_without_ratings_needs_no_threshold():
    frame = pd.DataFrame({"user": ["a", "a", "b", "b", "c"], "item": ["x", "y", "x", "z", "y"]})
    data = Interactions.from_frame(frame)
    assert len(positive_interactions(data, None)) == 5
    with pytest.raises(DataError, match="threshold=None"):
        positive_interactions(data, 3.0)


@pytest.mark.parametrize("by", ["random", "time"])
def test_the_per_user_split_keeps_every_user_in_training_and_no_pair_twice(by):
    data = positive_interactions(make_tiny(density=0.5), 3.0)
    split = per_user_split(data, (0.8, 0.1, 0.1), seed=3, by=by)
    assert set(np.unique(split.train.user)) == set(np.unique(data.user))
    keys = [set(part.pair_keys.tolist()) for part in (split.train, split.valid, split.test)]
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])
    assert len(split.train) + len(split.valid) + len(split.test) <= len(data)
    assert 0.7 < len(split.train) / len(data) < 0.9
    if by == "time":  # each user's test rows come after their training rows
        for user in np.unique(split.test.user):
            assert (
                split.test.timestamp[split.test.user == user].min()
                >= split.train.timestamp[split.train.user == user].max()
            )


def test_the_split_is_seeded():
    data = positive_interactions(make_tiny(), 3.0)
    a, b, c = (per_user_split(data, seed=s) for s in (1, 1, 2))
    assert np.array_equal(a.test.pair_keys, b.test.pair_keys)
    assert not np.array_equal(a.test.pair_keys, c.test.pair_keys)


def test_implicit_protocol_holds_positives_only(tiny):
    split = implicit_protocol(tiny, threshold=3.0, k=2)
    for part in (split.train, split.valid, split.test):
        assert (part.label == 1).all()
        assert (part.rating > 3).all()


def test_bad_ratios_are_refused(tiny):
    with pytest.raises(DataError, match="ratios"):
        per_user_split(tiny, (0.8, 0.3, 0.1))


def test_fake_users_join_after_the_real_ones_and_the_request_names_them(tiny_split):
    train = tiny_split.train
    polluted, request, targets = fake_user_attack(
        train, n_users=4, n_targets=2, profile_size=5, seed=0
    )
    assert polluted.n_users == train.n_users + 4
    assert np.array_equal(
        polluted.users.ids[: train.n_users], train.users.ids
    )  # a real user's index is unchanged
    assert sorted(request.users) == sorted(polluted.users.ids[train.n_users :].tolist())
    fake = polluted.take(request.rows(polluted))
    assert len(fake) == 4 * 7 and (fake.label == 1).all()
    for user in np.unique(fake.user):  # every fake profile holds every target
        assert set(targets) <= set(fake.item[fake.user == user].tolist())
    assert np.array_equal(
        polluted.drop(request.rows(polluted)).pair_keys,
        train.reindexed(polluted.users, polluted.items).pair_keys,
    )


def test_an_attack_larger_than_the_catalogue_is_refused(tiny_split):
    with pytest.raises(ConfigError, match="needs that many items"):
        fake_user_attack(tiny_split.train, n_users=1, n_targets=5, profile_size=10_000)


def test_fake_positives_are_new_pairs_after_the_real_rows(tiny_split):
    train = tiny_split.train
    polluted, request = fake_positive_attack(train, 0.2, seed=0)
    fake = polluted.take(np.arange(len(train), len(polluted)))
    assert len(fake) == round(0.2 * len(train)) and (fake.label == 1).all()
    assert not set(fake.pair_keys.tolist()) & set(train.pair_keys.tolist())
    assert len(set(fake.pair_keys.tolist())) == len(fake)
    assert np.array_equal(
        np.flatnonzero(request.rows(polluted)), np.arange(len(train), len(polluted))
    )
