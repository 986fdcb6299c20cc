"""Loaders: MovieLens from ../shared/data and the recbole wheel, and every other format on small
files written here; bad input must give a DataError that names the problem."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from recunlearn.data import Interactions, load_amazon, load_bookcrossing, load_dataset, load_table
from recunlearn.data.movielens import load_embedded_movielens_100k, load_movielens_100k
from recunlearn.errors import ConfigError, DataError
from tests.conftest import ml100k_path

# MovieLens ---------------------------------------------------------------------------------------


@pytest.mark.realdata
def test_movielens_100k_from_shared_data(ml100k):
    assert len(ml100k) == 100_000
    assert (ml100k.n_users, ml100k.n_items) == (943, 1682)
    assert sorted(np.unique(ml100k.rating).tolist()) == [1, 2, 3, 4, 5]
    assert ml100k.item_title[ml100k.items.index("1")[0]] == "Toy Story (1995)"
    assert (np.char.str_len(ml100k.item_title) > 0).all()
    assert ml100k.timestamp.min() > 8e8


@pytest.mark.realdata
def test_embedded_recbole_copy_equals_the_shared_copy(ml100k):
    embedded = load_embedded_movielens_100k()
    assert embedded.content_hash() == ml100k.content_hash()
    assert embedded.items.ids.tolist() == ml100k.items.ids.tolist()
    same_title = embedded.item_title == ml100k.item_title
    # the only differences are accents RecBole restored and its 'unkonwn' placeholder
    assert same_title.sum() >= 1670, embedded.item_title[~same_title][:5]


@pytest.mark.realdata
def test_registry_recognises_the_movielens_folder_and_file():
    by_folder = load_dataset(ml100k_path())
    assert len(by_folder) == 100_000
    assert load_dataset(ml100k_path() / "u.data").content_hash() == by_folder.content_hash()


def test_movielens_bad_input(tmp_path):
    folder = tmp_path / "ml"
    folder.mkdir()
    lines = (ml100k_path() / "u.data").read_text().splitlines()[:50]
    shutil.copy(ml100k_path() / "u.item", folder / "u.item")

    (folder / "u.data").write_text("\n".join(lines) + "\n" + lines[50 - 1][:7])  # cut mid-line
    with pytest.raises(DataError, match="line 51 is incomplete"):
        load_movielens_100k(folder)
    (folder / "u.data").write_text("\n".join(lines[:10] + ["196\t242\tthree\t881250949"]) + "\n")
    with pytest.raises(DataError, match="line 11: rating 'three' is not a number"):
        load_movielens_100k(folder)
    # a line with a fifth field must not shift the columns (pandas would make the first one an index)
    (folder / "u.data").write_text("1\t10\t4\t881250949\t7\n" + "\n".join(lines[:3]) + "\n")
    with pytest.raises(DataError, match="expected 4 columns .* found 5"):
        load_movielens_100k(folder)
    (folder / "u.data").write_text("\n".join(lines[:3] + ["1\t10\t4\t881250949\t7"]) + "\n")
    with pytest.raises(DataError, match="malformed"):
        load_movielens_100k(folder)
    (folder / "u.data").write_text("")
    with pytest.raises(DataError, match="empty file"):
        load_movielens_100k(folder)
    (folder / "u.item").unlink()
    with pytest.raises(DataError, match="missing u.item"):
        load_movielens_100k(folder)
    with pytest.raises(DataError, match="no such data folder"):
        load_movielens_100k(tmp_path / "absent")


@pytest.mark.parametrize(
    "name, content, message",
    [
        (
            "ratings.dat",
            "1::10::5::978300760\n2::20::five::978300761\n",
            "line 2: rating 'five' is not a number",
        ),
        ("ratings.dat", "", "ratings.dat: empty file"),
        (
            "log.inter",
            "user_id:token\titem_id:token\ttimestamp:float\n1\t10\t100\n2\t20\tyesterday\n",
            "line 3: timestamp 'yesterday' is not a number",
        ),
        ("log.inter", "user_id:token\titem_id:token\n", "no rows below the header"),
        ("log.inter", "", "empty file"),
    ],
)
def test_movielens_1m_and_atomic_reject_bad_values_and_empty_files(
    tmp_path, name, content, message
):
    (tmp_path / "movies.dat").write_text("10::A (2001)::Comedy\n20::B (1995)::Crime\n")
    (tmp_path / name).write_text(content)
    with pytest.raises(DataError, match=message):
        load_dataset(tmp_path / name)


def test_atomic_empty_rating_is_missing(tmp_path):
    inter = tmp_path / "log.inter"
    inter.write_text("user_id:token\titem_id:token\trating:float\n1\t10\t\n2\t20\t3\n")
    assert np.isnan(load_dataset(inter).rating).tolist() == [True, False]


def test_from_frame_rejects_values_that_are_not_numbers():
    frame = pd.DataFrame(
        {"user": ["a", "b"], "item": ["x", "y"], "rating": ["4", "five"], "timestamp": [1, 2]}
    )
    with pytest.raises(DataError, match="column 'rating': row 1 holds 'five'"):
        Interactions.from_frame(frame)
    frame["rating"] = ["4", ""]
    assert np.isnan(Interactions.from_frame(frame).rating).tolist() == [False, True]


def test_loader_options_are_checked_against_the_loader(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text(
        "1,a,4,100\n2,a,3,200\n3,a,5,300\n"
    )  # Amazon's headerless user,item,rating,timestamp
    for text, item_first in (("False", False), ("no", False), ("true", True)):
        data = load_dataset(path, item_first=text)
        assert (data.n_users, data.n_items) == ((1, 3) if item_first else (3, 1)), text
    with pytest.raises(ConfigError, match="item_first: Input should be a valid boolean"):
        load_dataset(path, item_first="maybe")


def test_table_ids_ignore_spaces_around_them(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("user, item, rating\n1, 2, 4\n3,2 ,5\n")
    data = load_dataset(path)
    assert data.items.ids.tolist() == ["2"] and data.users.ids.tolist() == ["1", "3"]


def test_movielens_1m_format(tmp_path):
    (tmp_path / "ratings.dat").write_text(
        "1::10::5::978300760\n1::20::2::978300761\n2::10::4::978300762\n"
    )
    (tmp_path / "movies.dat").write_bytes(
        "10::Amélie (2001)::Comedy\n20::Heat (1995)::Crime\n".encode("latin-1")
    )
    data = load_dataset(tmp_path)
    assert (len(data), data.n_users, data.n_items) == (3, 2, 2)
    assert data.item_title.tolist() == ["Amélie (2001)", "Heat (1995)"]


def test_recbole_atomic_files(tmp_path):
    (tmp_path / "shop.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "u1\tb1\t4\t100\nu2\tb1\t2\t200\nu2\tb2\t5\t300\n"
    )
    (tmp_path / "shop.item").write_text(
        "item_id:token\ttitle:token_seq\nb1\tFirst Book\nb2\tSecond Book\n"
    )
    data = load_dataset(tmp_path)
    assert data.name == "shop" and len(data) == 3
    assert data.item_title.tolist() == ["First Book", "Second Book"]
    (tmp_path / "shop.inter").write_text("user_id:token\titem_id:token\nu1\tb1\nu2\n")
    with pytest.raises(DataError, match="empty user or item"):
        load_dataset(tmp_path / "shop.inter")


# BookCrossing ------------------------------------------------------------------------------------

BX_RATINGS = """"User-ID";"ISBN";"Book-Rating"
"276725";"034545104X";"0"
"276726";"0155061224";"5"
"276727";"0446520802";"0"
"276729";"052165615X";"3"
"276729";"0521795028";"6"
"276733";"2080674722";"0"
"276726";"034545104X";"9"
"""
BX_BOOKS = """"ISBN";"Book-Title";"Book-Author";"Year-Of-Publication";"Publisher";"Image-URL-S"
"034545104X";"Flesh Tones: A Novel";"M. J. Rose";"2002";"Ballantine Books";"http://x/s.jpg"
"0155061224";"Rites of Passage; a Memoir";"Judith Rae";"2001";"Heinle";"http://x/s.jpg"
"052165615X";"Help!: Level 1";"Philip Prowse";"1999";"Cambridge University Press";"http://x/s.jpg"
"0521795028";"The Amsterdam Connection : Level 4 (Cambridge English Readers)";"Sue Leather";"2001";"CUP";"http://x/s.jpg"
"2080674722";"Les Misérables";"Victor Hugo";"1985";"Flammarion";"http://x/s.jpg"
"0446520802";"The Real \\"J. Peterman\\" Story";"Günter Grass";"1999";"Warner";"http://x/s.jpg"
"""


@pytest.fixture()
def bookcrossing(tmp_path):
    (tmp_path / "BX-Book-Ratings.csv").write_bytes(BX_RATINGS.encode("latin-1"))
    (tmp_path / "BX-Books.csv").write_bytes(BX_BOOKS.encode("latin-1"))
    return tmp_path


def _title(data: Interactions, item: str) -> str:
    return str(data.item_title[data.items.index(item)[0]])


def test_bookcrossing_explicit_ratings_with_titles_and_authors(bookcrossing):
    data = load_bookcrossing(bookcrossing)
    assert len(data) == 4 and data.n_users == 2
    assert sorted(data.rating.tolist()) == [3, 5, 6, 9]
    assert _title(data, "0155061224") == "Rites of Passage; a Memoir"  # ';' inside quotes
    assert str(data.item_author[data.items.index("052165615X")[0]]) == "Philip Prowse"
    assert load_dataset(bookcrossing).content_hash() == data.content_hash()
    assert load_dataset(bookcrossing / "BX-Book-Ratings.csv").content_hash() == data.content_hash()


def test_bookcrossing_keeps_implicit_zeros_on_request(bookcrossing):
    data = load_dataset(bookcrossing, implicit="keep")
    assert len(data) == 7 and (data.rating == 0).sum() == 3
    assert _title(data, "2080674722") == "Les Misérables"  # latin-1
    assert _title(data, "0446520802") == 'The Real "J. Peterman" Story'  # backslash-escaped quotes
    assert str(data.item_author[data.items.index("0446520802")[0]]) == "Günter Grass"


def test_bookcrossing_bad_input(tmp_path, bookcrossing):
    ratings = bookcrossing / "BX-Book-Ratings.csv"
    ratings.write_bytes(
        (BX_RATINGS + '"276744";"03855').encode("latin-1")
    )  # truncated inside a quote
    with pytest.raises(DataError, match="malformed BookCrossing ratings"):
        load_bookcrossing(bookcrossing)
    ratings.write_bytes(
        (BX_RATINGS + '"276744";"038550120X"\n').encode("latin-1")
    )  # rating cut off
    with pytest.raises(DataError, match="line 9 is incomplete"):
        load_bookcrossing(bookcrossing)
    ratings.write_bytes((BX_RATINGS + '"276744";"038550120X";"great"\n').encode("latin-1"))
    with pytest.raises(DataError, match="line 9: Book-Rating 'great' is not a number"):
        load_bookcrossing(bookcrossing)
    ratings.write_bytes(b'"User";"ISBN";"Rating"\n"1";"2";"3"\n')
    with pytest.raises(DataError, match=r"missing column\(s\) \['User-ID', 'Book-Rating'\]"):
        load_bookcrossing(bookcrossing)
    with pytest.raises(DataError, match="no such path"):
        load_bookcrossing(tmp_path / "absent")
    with pytest.raises(ConfigError, match="implicit"):
        load_dataset(bookcrossing, keep_zeros=True)


# Amazon ------------------------------------------------------------------------------------------

AMAZON = "A1B2C3,0000013714,4.0,1355616000\nA9Z8Y7,0000013714,5.0,1356048000\nA1B2C3,B00ABC1234,2.0,1360000000\n"


def test_amazon_ratings_csv(tmp_path):
    path = tmp_path / "ratings_Books.csv"
    path.write_text(AMAZON)
    data = load_dataset(path)
    assert data.name == "ratings_Books"
    assert (len(data), data.n_users, data.n_items) == (3, 2, 2)
    assert data.users.external(data.user).tolist() == ["A1B2C3", "A9Z8Y7", "A1B2C3"]
    assert data.items.ids.tolist() == ["0000013714", "B00ABC1234"]  # leading zeros kept
    assert data.timestamp.tolist() == [1355616000, 1356048000, 1360000000]
    swapped = load_amazon(path, item_first=True)
    assert swapped.users.ids.tolist() == ["0000013714", "B00ABC1234"]


def test_amazon_bad_input(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text(AMAZON + "A5,B7\n")
    with pytest.raises(DataError, match="line 4 is incomplete"):
        load_amazon(path)
    path.write_text(AMAZON + "A5,B7,five,1360000000\n")
    with pytest.raises(DataError, match="line 4: rating 'five'"):
        load_amazon(path)
    path.write_text("A5,B7,4.0\n")
    with pytest.raises(DataError, match="expected 4 columns"):
        load_amazon(path)
    path.write_text("")
    with pytest.raises(DataError, match="empty file"):
        load_amazon(path)


# Any table ---------------------------------------------------------------------------------------


def test_csv_table_with_recognised_column_names(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text(
        "userId,movieId,rating,timestamp,title\n7,100,4.5,1000,Alpha\n8,100,2,1001,Alpha\n"
        "7,200,3,1002,Beta\n"
    )
    data = load_dataset(path)
    assert (len(data), data.n_users, data.n_items) == (3, 2, 2)
    assert data.rating.tolist() == [4.5, 2, 3]
    assert data.item_title.tolist() == ["Alpha", "Beta"]
    assert (data.label == 1).all()


def test_tsv_table_with_named_columns_labels_and_dates(tmp_path):
    path = tmp_path / "clicks.tsv"
    path.write_text(
        "who\twhat\tclicked\twhen\tname\tby\nann\tk1\t1\t2024-01-01\tKettle\tACME\n"
        "bob\tk1\t0\t2024-01-02\tKettle\tACME\nbob\tk2\t1\t2024-01-03\tKnife\tBlades\n"
    )
    data = load_table(
        path, user="who", item="what", label="clicked", timestamp="when", title="name", author="by"
    )
    assert data.label.tolist() == [1, 0, 1]
    assert data.timestamp.tolist() == [1704067200, 1704153600, 1704240000]
    assert data.item_author.tolist() == ["ACME", "Blades"]
    assert np.isnan(data.rating).all()


def test_parquet_table(tmp_path):
    frame = pd.DataFrame(
        {
            "user_id": [1, 2, 2],
            "item_id": ["a", "a", "b"],
            "score": [1.0, 5.0, 3.0],
            "time": [5, 6, 7],
        }
    )
    path = tmp_path / "log.parquet"
    frame.to_parquet(path)
    data = load_dataset(path)
    assert data.users.ids.tolist() == ["1", "2"]
    assert data.rating.tolist() == [1, 5, 3] and data.timestamp.tolist() == [5, 6, 7]
    (tmp_path / "broken.parquet").write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(DataError, match="malformed Parquet"):
        load_dataset(tmp_path / "broken.parquet")


def test_table_bad_input(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("person,thing,stars\n1,2,3\n")
    with pytest.raises(
        DataError, match=r"no user column .*\['person', 'thing', 'stars'\].*user=\.\.\."
    ):
        load_dataset(path)
    with pytest.raises(DataError, match="no column 'rating' for rating"):
        load_table(path, user="person", item="thing", rating="rating")
    assert len(load_dataset(path, user="person", item="thing")) == 1
    path.write_text("user,item,label\n1,2,1\n1,3,2\n")
    with pytest.raises(DataError, match="only 0 and 1"):
        load_table(path)
    path.write_text("user,item\n1,2\n,3\n")
    with pytest.raises(DataError, match="line 3 is incomplete"):
        load_table(path)
    path.write_text('user,item\n1,"2\n')
    with pytest.raises(DataError, match="malformed table"):
        load_table(path)


def test_registry_errors_name_the_problem(tmp_path):
    with pytest.raises(DataError, match="neither a known dataset.*nor an existing path"):
        load_dataset(tmp_path / "nothing-here")
    (tmp_path / "notes.md").write_text("hello")
    with pytest.raises(DataError, match="format not recognised"):
        load_dataset(tmp_path / "notes.md")
    with pytest.raises(ConfigError, match="takes no option"):
        load_dataset("ml-100k", sample=3)


def test_saved_interactions_load_by_path(tiny, tmp_path):
    tiny.save(tmp_path / "tiny.npz")
    assert load_dataset(tmp_path / "tiny.npz").content_hash() == tiny.content_hash()


def test_shared_movielens_is_found_from_any_directory_or_the_environment(tmp_path, monkeypatch):
    from tests.conftest import SHARED_ML100K_ENV

    monkeypatch.delenv(SHARED_ML100K_ENV, raising=False)
    expected = ml100k_path().resolve()
    assert (expected / "u.data").is_file()
    monkeypatch.chdir(tmp_path)
    assert ml100k_path() == expected
    monkeypatch.setenv(SHARED_ML100K_ENV, str(tmp_path))
    assert ml100k_path() == tmp_path
    from recunlearn.data import available_datasets

    assert "ml-100k-shared" not in available_datasets(), "the library knows no repository layout"


def test_parquet_dates_are_unix_seconds_and_a_blank_timestamp_is_refused(tmp_path):
    """A datetime column read back from Parquet is not numeric: it went through to_numeric and came out
    in micro- or nanoseconds; a blank timestamp became 0 (1970), the oldest row in any time split."""
    frame = pd.DataFrame(
        {
            "user_id": [1, 2],
            "item_id": ["a", "b"],
            "time": pd.to_datetime(["2020-01-01", "2020-01-02"]),
        }
    )
    frame.to_parquet(tmp_path / "dates.parquet")
    assert load_dataset(tmp_path / "dates.parquet").timestamp.tolist() == [1577836800, 1577923200]
    frame["time"] = frame["time"].dt.tz_localize("Europe/Paris")  # midnight in Paris is 23:00 UTC
    frame.to_parquet(tmp_path / "zoned.parquet")
    assert load_dataset(tmp_path / "zoned.parquet").timestamp.tolist() == [1577833200, 1577919600]
    (tmp_path / "blank.csv").write_text("user,item,rating,timestamp\n1,10,5,100\n2,10,5,\n")
    with pytest.raises(DataError, match="line 3 is incomplete"):
        load_table(tmp_path / "blank.csv")


def test_an_atomic_file_with_a_blank_timestamp_is_refused_naming_its_line(tmp_path):
    (tmp_path / "x.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t10\t5\t100\n2\t10\t4\t\n"
    )
    with pytest.raises(DataError, match="x.inter: line 3 is incomplete"):
        load_dataset(tmp_path / "x.inter")
