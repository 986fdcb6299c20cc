import json

import numpy as np
import pytest

from recunlearn.data.samples import ITEM_SEPARATOR, SampleTable, render_prompt
from recunlearn.data.tallrec import (
    build_samples,
    read_tallrec_json,
    split_samples,
    write_tallrec_json,
)
from recunlearn.errors import DataError, UnknownIdError
from tests.conftest import make_tiny


def test_movie_windows_follow_tallrec(all_samples):
    data = make_tiny()
    sample = all_samples.take([0])
    user = sample.user[0]
    u = data.users.index([user])[0]
    rows = np.flatnonzero(data.user == u)
    rows = rows[np.lexsort((data.item[rows], data.timestamp[rows]))]
    position = int(sample.ids[0].split(":")[1])
    target, history = rows[position], rows[position - 4 : position]
    items = sample.items[0].split(ITEM_SEPARATOR)
    assert items[0] == data.items.ids[data.item[target]]
    assert items[1:] == data.items.ids[data.item[history]].tolist()
    assert sample.label[0] == data.label[target]
    preference, unpreference, question = sample.input[0].split("\n")
    for row in history:
        title = f'"{data.item_title[data.item[row]]}"'
        assert title in (preference if data.label[row] else unpreference)
    assert data.item_title[data.item[target]] in question


def test_latest_windows_kept_and_ids_unique():
    data = make_tiny()
    every = build_samples(data, history=4, max_samples=None)
    latest = build_samples(data, history=4, max_samples=50)
    assert len(latest) == 50 and len(set(latest.ids)) == 50
    assert latest.timestamp.min() >= np.sort(every.timestamp)[-50]


def test_book_style_one_sample_per_user_with_authors():
    data = make_tiny()
    data = data._replace(item_author=np.array([f"Author {i}" for i in range(data.n_items)]))
    books = build_samples(data, style="book", history=3)
    assert len(books) == len(set(books.user)) and "written by Author" in books.input[0]
    assert "target book" in books.instruction[0]


def test_splits_by_time_and_by_user(all_samples):
    train, valid, test = split_samples(all_samples, by="time")
    assert (
        train.timestamp.max() <= valid.timestamp.min()
        and valid.timestamp.max() <= test.timestamp.min()
    )
    assert len(train) + len(valid) + len(test) == len(all_samples)
    train, valid, test = split_samples(all_samples, by="user")
    assert not set(train.user) & set(test.user) and not set(train.user) & set(valid.user)


def test_tallrec_json_round_trip_and_errors(tmp_path, all_samples):
    path = tmp_path / "samples.json"
    write_tallrec_json(all_samples, path)
    back = read_tallrec_json(path)
    assert back.ids.tolist() == all_samples.ids.tolist()
    assert (
        np.array_equal(back.label, all_samples.label)
        and back.input.tolist() == all_samples.input.tolist()
    )
    assert back.items.tolist() == all_samples.items.tolist()
    assert np.array_equal(
        back.timestamp, all_samples.timestamp
    )  # a time split stays the same split
    assert back.content_hash() == all_samples.content_hash()
    plain = tmp_path / "plain.json"  # TALLRec's own files have only the three fields
    plain.write_text(
        json.dumps(
            [
                {"instruction": "i", "input": "x", "output": "No."},
                {"instruction": "i", "input": "y", "output": "Yes."},
            ]
        )
    )
    assert read_tallrec_json(plain).label.tolist() == [0.0, 1.0]
    plain.write_text(json.dumps([{"instruction": "i", "input": "x", "output": "Maybe"}]))
    with pytest.raises(DataError, match="Maybe"):
        read_tallrec_json(plain)


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"output": "Not sure."}, "Not sure"),  # starts with "No" but is no answer
        ({"timestamp": "noon"}, "timestamp must be an integer"),
        ({"items": None}, "items must be a list"),
        ({"items": "1234"}, "items must be a list"),
        ({"user": None}, "id and user must be text or integers"),
        ({"input": ["x"]}, "input must be text"),
    ],
)
def test_tallrec_json_rejects_bad_fields(tmp_path, extra, message):
    path = tmp_path / "bad.json"
    path.write_text(
        json.dumps(
            [
                {"instruction": "i", "input": "x", "output": "Yes."},
                {"instruction": "i", "input": "y", "output": "No.", **extra},
            ]
        )
    )
    with pytest.raises(DataError, match=f"record 1.*{message}"):
        read_tallrec_json(path)


def test_table_persistence_hash_and_lookup(tmp_path, all_samples):
    all_samples.save(tmp_path / "s.npz")
    back = SampleTable.load(tmp_path / "s.npz")
    assert back.content_hash() == all_samples.content_hash()
    assert (
        all_samples.drop(np.arange(len(all_samples)) == 0).content_hash()
        != all_samples.content_hash()
    )
    assert all_samples.positions([all_samples.ids[5]]).tolist() == [5]
    with pytest.raises(UnknownIdError, match="nope"):
        all_samples.positions(["nope"])
    assert all_samples.mentions([all_samples.items[0].split(ITEM_SEPARATOR)[0]])[0]


def test_max_samples_must_be_positive():
    """``argsort(...)[-0:]`` is the whole array: 0 used to keep every sample."""
    with pytest.raises(DataError, match="max_samples must be at least 1"):
        build_samples(make_tiny(), history=4, max_samples=0)
    assert len(build_samples(make_tiny(), history=4, max_samples=1)) == 1


def test_loading_a_foreign_file_names_it(tmp_path):
    """A .npy loads as a bare array, which used to raise a raw TypeError."""
    np.save(tmp_path / "x.npy", np.arange(3))
    with pytest.raises(DataError, match=r"x\.npy is not an \.npz archive"):
        SampleTable.load(tmp_path / "x.npy")


def test_prompt_templates():
    assert render_prompt("do it", "text", "input") == "text"
    alpaca = render_prompt("do it", "text", "alpaca")
    assert "### Instruction:\ndo it" in alpaca and alpaca.endswith("### Response:\n")


def test_content_hashes_of_tables_whose_texts_hold_separators_differ(all_samples):
    """Texts were joined with NUL and columns closed by \\x01, so moving a separator between two ids
    gave two different tables one hash."""
    first, second = all_samples.take([0, 1]), all_samples.take([0, 1])
    object.__setattr__(first, "ids", np.array(["s1\x00s2", "z"]))
    object.__setattr__(second, "ids", np.array(["s1", "s2\x00z"]))
    assert first.content_hash() != second.content_hash()
