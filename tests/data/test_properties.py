"""Properties of splits, k-core and persistence on random small tables (hypothesis)."""

from __future__ import annotations

from unittest.mock import patch

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from recunlearn.data import Interactions, interactions, k_core, random_split, temporal_leave_last
from recunlearn.data.interactions import member_mask
from recunlearn.errors import DataError


@st.composite
def tables(draw) -> Interactions:
    n_users = draw(st.integers(1, 12))
    n_items = draw(st.integers(1, 12))
    cells = draw(
        st.lists(
            st.tuples(st.integers(0, n_users - 1), st.integers(0, n_items - 1)),
            min_size=1,
            max_size=80,
            unique=True,
        )
    )
    users, items = np.array(cells).T
    n = len(cells)
    frame = pd.DataFrame(
        {
            "user": [f"u{u}" for u in users],
            "item": [f"i{i}" for i in items],
            "rating": draw(st.lists(st.integers(1, 5), min_size=n, max_size=n)),
            "timestamp": draw(st.lists(st.integers(0, 50), min_size=n, max_size=n)),
        }
    )
    return Interactions.from_frame(frame, threshold=3)


def _rows(table: Interactions) -> list[tuple]:
    frame = table.to_frame()
    return sorted(map(tuple, frame[["user", "item", "timestamp"]].astype(str).to_numpy().tolist()))


@settings(max_examples=60, deadline=None)
@given(tables(), st.integers(0, 1000))
def test_random_split_parts_are_disjoint_subsets_and_only_seen_ids(table, seed):
    split = random_split(table, (0.6, 0.2, 0.2), seed=seed)
    parts = [_rows(p) for p in (split.train, split.valid, split.test)]
    combined = parts[0] + parts[1] + parts[2]
    assert len(set(combined)) == len(combined)
    assert set(combined) <= set(_rows(table))
    seen_u, seen_i = set(split.train.user.tolist()), set(split.train.item.tolist())
    for part in (split.valid, split.test):
        assert set(part.user.tolist()) <= seen_u and set(part.item.tolist()) <= seen_i


@settings(max_examples=60, deadline=None)
@given(tables(), st.integers(1, 3))
def test_temporal_split_tests_each_users_latest_rows(table, n_last):
    split = temporal_leave_last(table, n_last=n_last)
    for part in (split.valid, split.test):
        for user in np.unique(part.user):
            assert (part.user == user).sum() <= n_last
    for row in range(len(split.test)):
        user = split.test.user[row]
        assert split.train.timestamp[split.train.user == user].max() <= split.test.timestamp[row]


@settings(max_examples=60, deadline=None)
@given(tables(), st.integers(1, 4))
def test_k_core_is_the_largest_k_core(table, k):
    try:
        core = k_core(table, k)
    except DataError:  # nothing survives
        core = None
    if core is not None:
        assert np.bincount(core.user).min() >= k and np.bincount(core.item).min() >= k
        assert set(_rows(core)) <= set(_rows(table))
        # maximal: no removed row has a user and an item that both stayed
        kept_u, kept_i = set(core.users.ids.tolist()), set(core.items.ids.tolist())
        removed = set(_rows(table)) - set(_rows(core))
        assert not any(u in kept_u and i in kept_i for u, i, _ in removed)


@settings(max_examples=30, deadline=None)
@given(tables())
def test_save_load_round_trip(tmp_path_factory, table):
    path = tmp_path_factory.mktemp("rt") / "t.npz"
    table.save(path)
    loaded = Interactions.load(path)
    assert loaded.content_hash() == table.content_hash()
    assert loaded.users.ids.tolist() == table.users.ids.tolist()


@given(
    st.lists(st.integers(-50, 50), max_size=60),
    st.lists(st.integers(-50, 50), max_size=20),
    st.sampled_from([1 << 23, 16]),
)
def test_member_mask_is_isin(values, candidates, table_limit):
    """Both ways of matching, a table over the candidates' range and a hash (ranges over the limit)."""
    values = np.asarray(values, np.int64)
    with patch.object(interactions, "_MEMBER_TABLE", table_limit):
        np.testing.assert_array_equal(
            member_mask(values, np.asarray(candidates, np.int64)), np.isin(values, candidates)
        )
