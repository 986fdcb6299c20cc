"""Binarisation, k-core, random and temporal splits; IFRU's protocol on MovieLens-100K."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recunlearn.data import (
    Interactions,
    binarize,
    ifru_protocol,
    k_core,
    random_split,
    temporal_leave_last,
)
from recunlearn.errors import DataError


def _seen_only(split) -> None:
    train_users, train_items = set(split.train.user.tolist()), set(split.train.item.tolist())
    for part in (split.valid, split.test):
        assert set(part.user.tolist()) <= train_users
        assert set(part.item.tolist()) <= train_items


@pytest.mark.realdata
def test_ifru_protocol_on_movielens_100k_matches_the_reference_code(ml100k):
    # figures measured independently with IFRU's _data_process.py (../shared/design/MEASURED.md)
    split = ifru_protocol(ml100k, threshold=3, k=5, seed=1024)
    assert (split.train.n_users, split.train.n_items) == (943, 1349)
    assert (len(split.train), len(split.valid), len(split.test)) == (59_572, 19_854, 19_856)
    assert 0.54 < split.train.label.mean() < 0.57
    _seen_only(split)
    assert split.train.users is split.test.users and split.train.items is split.valid.items


def test_binarize_uses_a_strict_threshold(tiny):
    labelled = binarize(tiny, 3)
    np.testing.assert_array_equal(labelled.label, (tiny.rating > 3).astype(np.float32))
    with pytest.raises(DataError, match="missing"):
        binarize(
            Interactions.from_frame(
                pd.DataFrame({"user": [1, 2], "item": [1, 2], "rating": [np.nan, 4]}),
                timestamp=None,
            ),
            3,
        )


def test_k_core_leaves_every_user_and_item_with_k_rows(ml100k):
    core = k_core(binarize(ml100k.take(np.arange(20_000)), 3), 10)
    assert np.bincount(core.user).min() >= 10 and np.bincount(core.item).min() >= 10
    assert len(core) < 20_000
    with pytest.raises(DataError, match="nothing left"):
        k_core(ml100k.take(np.arange(5)), 3)


def test_random_split_is_seeded_and_sized(tiny):
    first, again, other = (random_split(tiny, (0.6, 0.2, 0.2), seed=s) for s in (3, 3, 4))
    assert first.train.content_hash() == again.train.content_hash()
    assert first.train.content_hash() != other.train.content_hash()
    assert len(first.train) == round(0.6 * len(tiny))
    assert len(first.train) + len(first.valid) + len(first.test) <= len(tiny)
    _seen_only(first)
    with pytest.raises(DataError, match="ratios"):
        random_split(tiny, (0.5, 0.2, 0.2))


def test_temporal_leave_last_on_a_hand_made_table():
    frame = pd.DataFrame(
        {
            # user a: four rows out of time order; b: three rows; c: two rows (too few: all in train)
            "user": ["a", "a", "a", "a", "b", "b", "b", "c", "c"],
            "item": ["i1", "i2", "i3", "i4", "i1", "i2", "i3", "i1", "i3"],
            "rating": [5, 4, 3, 2, 1, 2, 3, 4, 5],
            "timestamp": [40, 10, 30, 20, 5, 7, 6, 1, 2],
        }
    )
    split = temporal_leave_last(Interactions.from_frame(frame, threshold=3), n_last=1)

    def pairs(part):
        return sorted(
            zip(part.users.external(part.user).tolist(), part.items.external(part.item).tolist())
        )

    assert pairs(split.test) == [("a", "i1"), ("b", "i2")]
    assert pairs(split.valid) == [("a", "i3"), ("b", "i3")]
    assert pairs(split.train) == [("a", "i2"), ("a", "i4"), ("b", "i1"), ("c", "i1"), ("c", "i3")]


def test_temporal_leave_last_keeps_only_seen_items():
    frame = pd.DataFrame(
        {
            "user": ["a"] * 3 + ["b"] * 3,
            "item": ["i1", "i2", "new", "i2", "i1", "i3"],
            "rating": [5] * 6,
            "timestamp": [1, 2, 3, 1, 2, 3],
        }
    )
    split = temporal_leave_last(Interactions.from_frame(frame), n_last=1)
    # validation holds (a, i2) and (b, i1), both trained on by the other user; the last items of
    # both users occur nowhere in training, so the test set is empty
    assert len(split.valid) == 2
    assert len(split.test) == 0
    _seen_only(split)


def test_a_repeated_pair_is_never_on_both_sides_of_a_split(tiny):
    """Re-ratings (the same user and item twice) used to land in train and test alike, testing the
    model on pairs it trained on; tables without repeats split exactly as before."""
    frame = tiny.to_frame()
    repeated = pd.concat([frame, frame.sample(frac=0.3, random_state=0)], ignore_index=True)
    data = Interactions.from_frame(repeated, threshold=3, name="repeated")
    for split in (random_split(data, seed=0), temporal_leave_last(data)):
        for part in (split.valid, split.test):
            assert not np.isin(part.pair_keys, split.train.pair_keys).any()
        assert not np.isin(split.valid.pair_keys, split.test.pair_keys).any(), (
            "nor in validation and test"
        )
    plain = random_split(tiny, seed=0)
    assert len(plain.train) + len(plain.valid) + len(plain.test) == len(
        tiny
    )  # nothing dropped without repeats
