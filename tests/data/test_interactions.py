"""The immutable interaction table: construction, derived tables, identity and persistence."""

from __future__ import annotations

import zipfile

import numpy as np
import pandas as pd
import pytest

from recunlearn.data import Interactions, Vocabulary
from recunlearn.errors import DataError, UnknownIdError


@pytest.fixture()
def small() -> Interactions:
    frame = pd.DataFrame(
        {
            "user": ["a", "b", "a", "c", "b"],
            "item": ["x", "y", "y", "z", "x"],
            "rating": [5, 2, 4, 1, 3],
            "timestamp": [10, 20, 30, 40, 50],
        }
    )
    return Interactions.from_frame(
        frame, threshold=3, titles={"x": "X-Men", "y": "Yentl", "z": "Zelig"}, name="small"
    )


def test_columns_and_vocabularies_are_read_only(small):
    for column in (
        small.user,
        small.item,
        small.label,
        small.rating,
        small.timestamp,
        small.users.ids,
        small.item_title,
    ):
        with pytest.raises(ValueError):
            column[0] = column[1]
    with pytest.raises(AttributeError):
        small.name = "other"


def test_from_frame_labels_ids_and_titles(small):
    assert small.label.tolist() == [1, 0, 1, 0, 0]
    assert small.users.ids.tolist() == ["a", "b", "c"]
    assert small.items.external(small.item).tolist() == ["x", "y", "y", "z", "x"]
    assert small.item_title.tolist() == ["X-Men", "Yentl", "Zelig"]


def test_numeric_ids_sort_as_numbers():
    vocab = Vocabulary.from_values(["10", "9", "100", "1"])
    assert vocab.ids.tolist() == ["1", "9", "10", "100"]


def test_unknown_ids_are_named(small):
    with pytest.raises(UnknownIdError, match="'nobody'"):
        small.users.index(["a", "nobody"])


def test_duplicate_vocabulary_ids_are_rejected():
    with pytest.raises(DataError, match="duplicate"):
        Vocabulary(np.array(["a", "b", "a"]), kind="user")


def test_inconsistent_columns_are_rejected(small):
    with pytest.raises(DataError, match="label"):
        small.with_labels(np.array([1, 0, 2, 0, 0], np.float32))
    with pytest.raises(DataError, match="rows"):
        Interactions(
            user=[0, 1],
            item=[0],
            label=[1, 1],
            rating=[1, 1],
            timestamp=[0, 0],
            users=small.users,
            items=small.items,
        )
    with pytest.raises(DataError, match="user index"):
        Interactions(
            user=[0, 7],
            item=[0, 0],
            label=[1, 1],
            rating=[1, 1],
            timestamp=[0, 0],
            users=small.users,
            items=small.items,
        )


def test_missing_columns_in_a_frame_are_named():
    with pytest.raises(DataError, match="missing column.*'stars'"):
        Interactions.from_frame(pd.DataFrame({"user": [1], "item": [2]}), rating="stars")
    with pytest.raises(DataError, match="missing column.*'item'"):
        Interactions.from_frame(pd.DataFrame({"user": [1], "rating": [2]}))


def test_a_user_item_frame_loads_as_positive_interactions():
    data = Interactions.from_frame(pd.DataFrame({"user": [1, 1, 2], "item": [2, 3, 2]}))
    assert len(data) == 3 and (data.label == 1).all() and np.isnan(data.rating).all()


def test_take_drop_keep_vocabularies_and_order(small):
    taken = small.take([3, 0])
    assert taken.users is small.users and taken.items is small.items
    assert taken.timestamp.tolist() == [40, 10]
    dropped = small.drop(small.label > 0)
    assert dropped.rating.tolist() == [2, 1, 3]
    assert len(small) == 5  # the original is untouched


def test_concat_needs_shared_vocabularies(small):
    first, second = small.take([0, 1]), small.take([2, 3, 4])
    assert first.concat(second).content_hash() == small.content_hash()
    other = Interactions.from_frame(small.to_frame(), threshold=3)
    with pytest.raises(DataError, match="share vocabularies"):
        first.concat(other)


def test_compact_drops_unused_ids_and_keeps_titles_aligned(small):
    part = small.take(small.user != small.users.index("a")[0]).take([1])  # c rates z
    compact = part.compact()
    assert compact.users.ids.tolist() == ["c"] and compact.items.ids.tolist() == ["z"]
    assert compact.item_title.tolist() == ["Zelig"]
    assert compact.content_hash() == part.content_hash()


def test_content_hash_sees_every_column_and_ignores_indexing(small):
    base = small.content_hash()
    assert small.with_labels(1 - small.label).content_hash() != base
    assert small.take([1, 0, 2, 3, 4]).content_hash() != base
    reindexed = small.reindexed(Vocabulary(np.array(["c", "b", "a"]), kind="user"), small.items)
    assert not np.array_equal(reindexed.user, small.user)
    assert reindexed.content_hash() == base
    # a vocabulary with a longer id stores every id wider; the same rows hash the same
    wider = small.reindexed(
        Vocabulary(np.array(["a", "b", "c", "a-much-longer-id"]), kind="user"), small.items
    )
    assert wider.users.ids.dtype != small.users.ids.dtype and wider.content_hash() == base


def test_save_load_round_trip_without_pickle(small, tmp_path):
    path = tmp_path / "small.npz"
    small.save(path)
    with zipfile.ZipFile(path) as archive:
        assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_DEFLATED}
        for member in archive.namelist():
            with archive.open(member) as fh:
                assert np.lib.format.read_array(fh, allow_pickle=False) is not None
    with np.load(path, allow_pickle=False) as z:  # what np.savez_compressed writes, read by numpy
        assert set(z.files) >= {"user", "item", "label", "users", "items", "meta"}
        np.testing.assert_array_equal(z["user"], small.user)
    loaded = Interactions.load(path)
    assert loaded.content_hash() == small.content_hash()
    assert loaded.name == "small"
    assert loaded.item_title.tolist() == small.item_title.tolist()
    assert loaded.users.ids.tolist() == small.users.ids.tolist()
    shared = Interactions.load(path, users=small.users, items=small.items)
    assert shared.users is small.users


def test_load_rejects_missing_corrupt_and_mismatched_files(small, tmp_path):
    with pytest.raises(DataError, match="no such file"):
        Interactions.load(tmp_path / "absent.npz")
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"not a zip archive")
    with pytest.raises(DataError, match="not an .npz archive"):
        Interactions.load(corrupt)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, a=np.arange(3))
    with pytest.raises(DataError, match="not an interactions table .* lacks user, item"):
        Interactions.load(foreign)
    path = tmp_path / "small.npz"
    small.save(path)
    with pytest.raises(DataError, match="vocabulary differs"):
        Interactions.load(path, users=Vocabulary(np.array(["a", "b", "z"]), kind="user"))
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    for damaged, match in (
        ({"meta": np.array("{not json")}, "meta record is damaged"),
        ({"meta": np.array("{}")}, "meta record is damaged"),
        ({"user": arrays["user"] + 0.7}, "user must hold integers, not float64"),
    ):
        np.savez(tmp_path / "damaged.npz", **{**arrays, **damaged})
        with pytest.raises(DataError, match=match):
            Interactions.load(tmp_path / "damaged.npz")
