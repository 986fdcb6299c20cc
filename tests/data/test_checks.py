"""Checks on data files: infinite and blank ratings refused naming their line, duplicate rows counted
and dropped by the documented rule, compressed files read or named, pandas' warnings logged."""

from __future__ import annotations

import bz2
import gzip
import logging
import lzma
import warnings
import zipfile

import numpy as np
import pandas as pd
import pytest

from recunlearn.data import Interactions, load_dataset
from recunlearn.data.loaders import load_amazon, load_bookcrossing, load_table
from recunlearn.errors import DataError

TABLE = "user,item,rating,timestamp\n1,10,4,100\n2,10,5,101\n2,11,3,102\n"


@pytest.mark.parametrize(
    "content, message",
    [
        (
            "user,item,rating\n1,10,4\n2,10,inf\n",
            r"t.csv: line 3: rating 'inf' is not a finite number",
        ),
        ("user,item,rating\n1,10,-inf\n", r"t.csv: line 2: rating '-inf' is not a finite number"),
        ("user,item,rating\n1,10,Infinity\n", r"line 2: rating 'inf' is not a finite number"),
        ("user,item,rating\n1,10,4\n2,10,\n", r"t.csv: line 3: rating is blank"),
        ("user,item,rating\n1,10,4\n2,10,  \n", r"t.csv: line 3: rating is blank"),
        ("user,item,label\n1,10,1\n2,10,\n", r"t.csv: line 3: label is blank"),
        ("user,item,timestamp\n1,10,5\n2,10,inf\n", "timestamp"),
    ],
)
def test_a_table_refuses_infinite_and_blank_ratings_naming_the_line(tmp_path, content, message):
    path = tmp_path / "t.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        load_dataset(path)


def test_other_formats_refuse_an_infinite_rating_naming_the_line(tmp_path):
    amazon = tmp_path / "a.csv"
    amazon.write_text("u1,i1,4.0,100\nu2,i1,inf,101\n")
    with pytest.raises(DataError, match="a.csv: line 2: rating 'inf' is not a finite number"):
        load_amazon(amazon)
    folder = tmp_path / "ml"
    folder.mkdir()
    (folder / "u.data").write_text("1\t10\t4\t100\n2\t10\tinf\t101\n")
    (folder / "u.item").write_text("10|Toy Story (1995)|01-Jan-1995||x|0\n")
    with pytest.raises(DataError, match="u.data: line 2: rating 'inf' is not a finite number"):
        load_dataset(folder)


def test_a_frame_with_an_infinite_rating_is_refused():
    frame = pd.DataFrame({"user": ["a", "b"], "item": ["x", "y"], "rating": [4.0, np.inf]})
    with pytest.raises(DataError, match="column 'rating': row 1 holds 'inf', not a finite number"):
        Interactions.from_frame(frame)


def test_duplicate_rows_are_counted_and_one_of_each_kept(tmp_path, caplog):
    path = tmp_path / "t.csv"
    path.write_text(TABLE + "1,10,4,100\n2,11,3,102\n1,10,4,100\n1,10,2,200\n")
    with caplog.at_level(logging.WARNING, logger="recunlearn.data.loaders"):
        data = load_table(path)
    assert "t.csv: 3 duplicate row(s)" in caplog.text and "first at line 5" in caplog.text
    # the three copies go; the re-rating of (1, 10) at another time stays
    assert len(data) == 4
    assert sorted(data.rating.tolist()) == [2.0, 3.0, 4.0, 5.0]


def test_a_table_without_duplicates_logs_nothing(tmp_path, caplog):
    path = tmp_path / "t.csv"
    path.write_text(TABLE)
    with caplog.at_level(logging.WARNING):
        assert len(load_table(path)) == 3
    assert caplog.text == ""


def test_amazon_and_bookcrossing_drop_duplicate_rows(tmp_path, caplog):
    amazon = tmp_path / "a.csv"
    amazon.write_text("u1,i1,4.0,100\nu1,i1,4.0,100\nu2,i1,5.0,101\n")
    books = tmp_path / "bx"
    books.mkdir()
    (books / "BX-Book-Ratings.csv").write_text(
        '"User-ID";"ISBN";"Book-Rating"\n"1";"A";"5"\n"1";"A";"5"\n"2";"A";"7"\n'
    )
    with caplog.at_level(logging.WARNING):
        assert len(load_amazon(amazon)) == 2
        assert len(load_bookcrossing(books)) == 2
    assert caplog.text.count("1 duplicate row(s)") == 2


def _compress(path, suffix):
    target = path.with_name(path.name + suffix)
    data = path.read_bytes()
    if suffix == ".zip":
        with zipfile.ZipFile(target, "w") as archive:
            archive.writestr(path.name, data)
    else:
        opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}[suffix]
        with opener(target, "wb") as fh:
            fh.write(data)
    return target


@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".xz", ".zip"])
def test_a_compressed_table_reads_as_the_plain_one(tmp_path, suffix):
    plain = tmp_path / "ratings.csv"
    plain.write_text(TABLE)
    data = load_dataset(_compress(plain, suffix))
    assert data.name == "ratings"
    assert data.content_hash() == load_dataset(plain).content_hash()


def test_a_compressed_amazon_file_is_still_amazon(tmp_path):
    plain = tmp_path / "ratings.csv"
    plain.write_text("u1,i1,4.0,100\nu2,i1,5.0,101\n")
    assert load_dataset(_compress(plain, ".gz")).content_hash() == load_amazon(plain).content_hash()


@pytest.mark.parametrize("name", ["u.data", "archive", "ratings.parquet"])
def test_a_compressed_file_in_another_format_is_named_as_compressed(tmp_path, name):
    plain = tmp_path / name
    plain.write_text("1\t10\t4\t100\n")
    for suffix in (".gz", ".zip"):
        with pytest.raises(DataError, match=f"{name}{suffix}: a (gzip|zip)-compressed file"):
            load_dataset(_compress(plain, suffix))


def test_lines_pandas_skips_are_one_logged_count_not_warnings(tmp_path, caplog):
    folder = tmp_path / "bx"
    folder.mkdir()
    (folder / "BX-Book-Ratings.csv").write_text('"User-ID";"ISBN";"Book-Rating"\n"1";"A";"5"\n')
    (folder / "BX-Books.csv").write_text(
        '"ISBN";"Book-Title";"Book-Author"\n"A";"Title";"Who"\n"B";"x";"y";"extra"\n'
        '"C";"x";"y";"extra"\n'
    )
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING):
        warnings.simplefilter("error")
        data = load_bookcrossing(folder)
    assert len(data) == 1
    assert "BX-Books.csv: 2 malformed line(s) skipped (Skipping line 3" in caplog.text
