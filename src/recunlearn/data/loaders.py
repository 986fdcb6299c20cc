"""BookCrossing, Amazon ratings CSV, and any CSV/Parquet table with named columns.

Each loader returns raw ratings with every label 1 (the rows are interactions); binarise with
:func:`recunlearn.data.binarize` to turn ratings into likes, as the IFRU protocol does
(rating > 5 on BookCrossing, > 4 on Amazon).
"""

from __future__ import annotations

import bz2
import gzip
import io
import logging
import lzma
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Literal

import numpy as np
import pandas as pd

from recunlearn.data.interactions import Interactions, number_kind, parse_numbers
from recunlearn.errors import DataError

log = logging.getLogger(__name__)

BX_RATINGS = "BX-Book-Ratings.csv"
BX_BOOKS = "BX-Books.csv"

COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "user": ("user", "user_id", "userid", "user-id", "reviewerid", "customer_id", "uid"),
    "item": (
        "item",
        "item_id",
        "itemid",
        "movieid",
        "movie_id",
        "asin",
        "isbn",
        "book_id",
        "product_id",
        "iid",
    ),
    "rating": ("rating", "ratings", "score", "overall", "book-rating", "stars"),
    "label": ("label", "click", "clicked", "like", "liked"),
    "timestamp": ("timestamp", "time", "unixreviewtime", "ts", "datetime", "date"),
    "title": ("title", "item_title", "movie_title", "book-title", "book_title", "name"),
    "author": ("author", "item_author", "book-author", "book_author"),
}
"""Column names :func:`load_table` recognises (case-insensitively) when a role is not named."""


def read_csv(path: Path, what: str, **kwargs) -> pd.DataFrame:
    """``pd.read_csv`` with parse and decoding failures turned into a DataError naming the file, and
    pandas' warnings logged as lines naming the file (the lines it skips, ``on_bad_lines="warn"``, as
    one count), not printed as warnings with pandas' source lines."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            frame = pd.read_csv(path, **kwargs)
    except FileNotFoundError:
        raise DataError(f"no such file: {path}") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: empty file, expected {what}") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as exc:
        raise DataError(f"{path}: malformed {what} ({exc})") from None
    except LookupError as exc:  # an unknown encoding
        raise DataError(f"{path}: {exc}") from None
    skipped = [
        line
        for w in caught
        if issubclass(w.category, pd.errors.ParserWarning)
        for line in str(w.message).strip().splitlines()
    ]
    if skipped:
        log.warning("%s: %d malformed line(s) skipped (%s)", path, len(skipped), skipped[0])
    others = (w for w in caught if not issubclass(w.category, pd.errors.ParserWarning))
    for message in dict.fromkeys(str(w.message).strip().splitlines()[0] for w in others):
        log.warning("%s: %s", path, message)
    return frame


def check_complete(
    frame: pd.DataFrame, columns: Sequence[str], path: Path, header_lines: int
) -> None:
    """Raise naming the first line with an empty required field (a truncated or malformed file)."""
    empty = frame[list(columns)].isna().any(axis=1).to_numpy()
    if empty.any():
        line = int(empty.argmax()) + 1 + header_lines
        raise DataError(f"{path}: line {line} is incomplete (truncated or malformed file?)")


def numeric_column(
    frame: pd.DataFrame, column: str, path: Path, header_lines: int, blank_ok: bool = True
) -> pd.Series:
    """The column as numbers (blank cells NaN); raise naming the first line whose value is not a
    finite number, or (``blank_ok=False``) is blank."""
    values, bad = parse_numbers(frame[column])
    if bad is not None:
        value = frame[column].iloc[bad]
        shown = value if isinstance(value, str) else str(value)  # 'inf' whether read as text or not
        raise DataError(
            f"{path}: line {bad + 1 + header_lines}: {column} {shown!r} is not a {number_kind(value)}"
        )
    if not blank_ok and values.isna().any():
        line = int(values.isna().to_numpy().argmax()) + 1 + header_lines
        raise DataError(f"{path}: line {line}: {column} is blank")
    return values


def drop_duplicate_rows(frame: pd.DataFrame, path: Path, header_lines: int) -> pd.DataFrame:
    """The rule for duplicates: rows equal in every column read are one event recorded twice, so the
    first is kept and the count is logged. Rows that repeat a (user, item) pair with another rating
    or time are re-ratings and stay (a split keeps each pair on one side). ``frame`` keeps the
    row labels ``read_csv`` gave it, so that the line named is the file's."""
    repeated = frame.duplicated().to_numpy()
    if not repeated.any():
        return frame
    log.warning(
        "%s: %d duplicate row(s) (equal in every column) dropped, the first of each kept; "
        "first at line %d",
        path,
        int(repeated.sum()),
        int(frame.index[repeated.argmax()]) + 1 + header_lines,
    )
    return frame[~repeated]


COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zip": "zip"}
"""Compressed file suffixes, read as the text table inside (``ratings.csv.gz``)."""


def compression(path: Path) -> str | None:
    """The compression a file's name says (``.gz``, ``.bz2``, ``.xz``, ``.zip``), or None."""
    return COMPRESSIONS.get(path.suffix.lower())


def table_suffix(path: Path) -> str:
    """The suffix naming the table's format, under a compression suffix: ``.csv`` of ``x.csv.gz``."""
    return Path(path.stem).suffix.lower() if compression(path) else path.suffix.lower()


def open_text(path: Path) -> IO[str]:
    """A text file, or the text inside a compressed one (the first member of a zip archive)."""
    kind = compression(path)
    if kind == "zip":
        archive = zipfile.ZipFile(path)
        return io.TextIOWrapper(archive.open(archive.namelist()[0]), "utf-8", errors="replace")
    opener = {"gzip": gzip.open, "bz2": bz2.open, "xz": lzma.open}.get(kind or "", open)
    return opener(path, "rt", encoding="utf-8", errors="replace")


# BookCrossing ------------------------------------------------------------------------------------


def load_bookcrossing(path: str | Path, implicit: Literal["drop", "keep"] = "drop") -> Interactions:
    """BookCrossing (Ziegler et al.) from ``BX-Book-Ratings.csv`` and, if present, ``BX-Books.csv``.

    Both are ';'-separated, quoted, latin-1. Ratings run 1-10; a rating of 0 records an implicit
    interaction (the user handled the book without rating it). ``implicit="drop"`` (the default,
    and what rating-based protocols want) removes those rows; ``"keep"`` keeps them with rating 0,
    which a later :func:`binarize` turns into negatives. Titles and authors come from
    ``BX-Books.csv``; books it does not list get an empty title, and so do the few books whose
    line in that file cannot be parsed (their count is logged: the ratings stay exact). Duplicate
    rows: see :func:`drop_duplicate_rows`.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"no such path: {path}")
    folder = path if path.is_dir() else path.parent
    ratings_path = path if path.is_file() else folder / BX_RATINGS
    if not ratings_path.is_file():
        raise DataError(f"{folder} holds no {BX_RATINGS}")
    if implicit not in ("drop", "keep"):
        raise DataError(f"implicit must be 'drop' or 'keep', got {implicit!r}")
    ratings = read_csv(
        ratings_path,
        "BookCrossing ratings (User-ID;ISBN;Book-Rating)",
        sep=";",
        encoding="latin-1",
        dtype={"User-ID": str, "ISBN": str},
        escapechar="\\",
        keep_default_na=False,
        na_values=[""],
    )
    columns = ["User-ID", "ISBN", "Book-Rating"]
    missing = [c for c in columns if c not in ratings.columns]
    if missing:
        raise DataError(
            f"{ratings_path}: missing column(s) {missing}; the header has {list(ratings.columns)}"
        )
    check_complete(ratings, columns, ratings_path, header_lines=1)
    ratings["Book-Rating"] = numeric_column(ratings, "Book-Rating", ratings_path, header_lines=1)
    ratings = drop_duplicate_rows(ratings, ratings_path, header_lines=1)
    if implicit == "drop":
        ratings = ratings[ratings["Book-Rating"] > 0]
        if ratings.empty:
            raise DataError(f"{ratings_path}: no explicit ratings (all are 0); use implicit='keep'")
    titles = authors = None
    books_path = folder / BX_BOOKS
    if books_path.is_file():
        books = read_csv(
            books_path,
            "BookCrossing books (ISBN;Book-Title;Book-Author;...)",
            sep=";",
            encoding="latin-1",
            dtype=str,
            escapechar="\\",
            keep_default_na=False,
            on_bad_lines="warn",
        )
        missing = [c for c in ("ISBN", "Book-Title", "Book-Author") if c not in books.columns]
        if missing:
            raise DataError(
                f"{books_path}: missing column(s) {missing}; the header has {list(books.columns)}"
            )
        titles = dict(zip(books["ISBN"], books["Book-Title"]))
        authors = dict(zip(books["ISBN"], books["Book-Author"]))
    return Interactions.from_frame(
        ratings,
        user="User-ID",
        item="ISBN",
        rating="Book-Rating",
        timestamp=None,
        titles=titles,
        authors=authors,
        name="bookcrossing",
    )


def is_bookcrossing(path: Path) -> bool:
    return (path / BX_RATINGS).is_file() if path.is_dir() else path.name == BX_RATINGS


# Amazon ------------------------------------------------------------------------------------------


def load_amazon(path: str | Path, item_first: bool = False) -> Interactions:
    """Amazon 'ratings only' CSV: ``user,item,rating,timestamp`` with no header (McAuley's 2014 files).

    The 2018 release (Ni et al.) writes ``item,user,rating,timestamp``: pass ``item_first=True``.
    A compressed copy (``.csv.gz``, ...) is read as it is; duplicate rows: see
    :func:`drop_duplicate_rows`.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such file: {path}")
    names = (
        ["item", "user", "rating", "timestamp"]
        if item_first
        else ["user", "item", "rating", "timestamp"]
    )
    frame = read_csv(
        path,
        "Amazon ratings (user,item,rating,timestamp)",
        header=None,
        dtype={0: str, 1: str},
        keep_default_na=False,
        na_values=[""],
    )
    if frame.shape[1] != 4:
        raise DataError(
            f"{path}: expected 4 columns (user,item,rating,timestamp), found {frame.shape[1]}"
        )
    frame.columns = names
    check_complete(frame, names, path, header_lines=0)
    frame["rating"] = numeric_column(frame, "rating", path, header_lines=0)
    frame["timestamp"] = numeric_column(frame, "timestamp", path, header_lines=0).astype(np.int64)
    frame = drop_duplicate_rows(frame, path, header_lines=0)
    return Interactions.from_frame(
        frame, name=Path(path.stem).stem if compression(path) else path.stem
    )


def is_amazon(path: Path) -> bool:
    """A headerless .csv (or compressed .csv) whose first line is ``text,text,number,integer``."""
    if not (path.is_file() and table_suffix(path) == ".csv"):
        return False
    try:
        with open_text(path) as fh:
            fields = fh.readline().strip().split(",")
    except (OSError, EOFError, zipfile.BadZipFile, lzma.LZMAError, IndexError):
        return False  # not what its name says: load_table names the problem
    if len(fields) != 4:
        return False
    try:
        float(fields[2])
        int(fields[3])
    except ValueError:
        return False
    return True


# Any table ---------------------------------------------------------------------------------------

TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".parquet": None, ".pq": None}
"""File suffixes :func:`load_table` reads, with the default separator of the text ones."""


def _find(columns: Sequence[str], role: str, given: str | None, path: Path) -> str | None:
    """The column playing ``role``: the one named, or the first alias present."""
    if given is not None:
        if given not in columns:
            raise DataError(
                f"{path}: no column {given!r} for {role}; the table has {list(columns)}"
            )
        return given
    lowered = {str(c).lower(): c for c in columns}
    return next((lowered[a] for a in COLUMN_ALIASES.get(role, ()) if a in lowered), None)


def _roles(columns: list[str], path: Path, given: dict[str, str | None]) -> dict[str, str | None]:
    """The column of each role (named in ``given`` or found by alias); user and item must be found."""
    found = {role: _find(columns, role, name, path) for role, name in given.items()}
    for role in ("user", "item"):
        if found[role] is None:
            raise DataError(
                f"{path}: no {role} column (tried {list(COLUMN_ALIASES[role])}); the table has "
                f"{columns}; name it with {role}=..."
            )
    return found


def _as_seconds(values: pd.Series, path: Path) -> pd.Series:
    """Integer timestamps as they are; dates (a datetime column, or strings) as Unix seconds."""
    if pd.api.types.is_datetime64_any_dtype(
        values
    ):  # Parquet's: its ticks are micro- or nanoseconds
        moments = (
            values.dt.tz_localize("UTC") if values.dt.tz is None else values.dt.tz_convert("UTC")
        )
        return (moments - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    if pd.api.types.is_numeric_dtype(values):
        return values
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().all():
        return numeric
    try:
        parsed = pd.to_datetime(values, utc=True)
    except (ValueError, TypeError) as exc:
        raise DataError(
            f"{path}: timestamp column {values.name!r} holds neither numbers nor dates ({exc})"
        ) from None
    return (parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)


def load_table(
    path: str | Path,
    *,
    user: str | None = None,
    item: str | None = None,
    rating: str | None = None,
    timestamp: str | None = None,
    label: str | None = None,
    title: str | None = None,
    author: str | None = None,
    sep: str | None = None,
    encoding: str = "utf-8",
) -> Interactions:
    """Any CSV/TSV/Parquet table with a header: name the columns, or let common names be found.

    Unnamed roles are looked up in :data:`COLUMN_ALIASES` (``userId``, ``movieId``, ``asin``, ...);
    user and item are required, the rest optional. ``label`` (0/1) sets the labels directly;
    without it every row is a positive. Title and author columns give item text (first value per
    item). Timestamps may be integers or dates. A rating or label must be a finite number on every
    line (a blank one is refused, naming its line). A compressed CSV/TSV (``ratings.csv.gz``,
    ``.bz2``, ``.xz``, ``.zip``) is read as it is. Duplicate rows: see :func:`drop_duplicate_rows`.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such file: {path}")
    suffix = table_suffix(path)
    if compression(path) and suffix not in (".csv", ".tsv"):
        raise DataError(
            f"{path}: a {compression(path)}-compressed file; compressed tables are read when "
            "named <name>.csv or <name>.tsv plus the suffix (ratings.csv.gz); decompress other "
            "formats first"
        )
    given = {
        "user": user,
        "item": item,
        "rating": rating,
        "timestamp": timestamp,
        "label": label,
        "title": title,
        "author": author,
    }
    if suffix in (".parquet", ".pq"):
        try:
            frame = pd.read_parquet(path)
        except ImportError as exc:
            raise DataError(
                f"{path}: reading Parquet needs pyarrow (pip install 'recunlearn[parquet]'): {exc}"
            ) from None
        except Exception as exc:  # pyarrow raises its own error types for corrupt files
            raise DataError(f"{path}: malformed Parquet file ({exc})") from None
        found = _roles(list(frame.columns), path, given)
        header_lines = 0
    else:
        options = {
            "sep": sep or TABLE_SUFFIXES.get(suffix) or ",",
            "encoding": encoding,
            "keep_default_na": False,
            "na_values": [""],
            "skipinitialspace": True,
        }
        header = read_csv(path, "table with a header line", nrows=0, **options)
        found = _roles(list(header.columns), path, given)
        text_columns = [
            found[r] for r in ("user", "item", "title", "author") if found[r] is not None
        ]
        frame = read_csv(
            path, "table with a header line", dtype=dict.fromkeys(text_columns, str), **options
        )
        header_lines = 1
    if frame.empty:
        raise DataError(f"{path}: the table has no rows")
    check_complete(
        frame,
        [found[r] for r in ("user", "item", "timestamp") if found[r] is not None],
        path,
        header_lines,
    )
    for role in ("rating", "label"):
        if found[role] is not None:
            frame[found[role]] = numeric_column(
                frame, found[role], path, header_lines, blank_ok=False
            )
    if found["timestamp"] is not None:
        frame[found["timestamp"]] = _as_seconds(frame[found["timestamp"]], path)
    for role in (
        "user",
        "item",
    ):  # "2" and "2 " are one id: a stray space must not split a user or an item
        frame[found[role]] = frame[found[role]].astype(str).str.strip()
    first = frame.drop_duplicates(found["item"])
    text = {
        role: dict(zip(first[found["item"]], first[found[role]].fillna("").astype(str)))
        for role in ("title", "author")
        if found[role] is not None
    }
    if found["label"] is not None and not frame[found["label"]].isin([0, 1]).all():
        raise DataError(f"{path}: label column {found['label']!r} must hold only 0 and 1")
    frame = drop_duplicate_rows(frame, path, header_lines)
    return Interactions.from_frame(
        frame,
        user=found["user"],
        item=found["item"],
        rating=found["rating"],
        label=found["label"],
        timestamp=found["timestamp"],
        titles=text.get("title"),
        authors=text.get("author"),
        name=Path(path.stem).stem if compression(path) else path.stem,
    )


def is_table(path: Path) -> bool:
    """A table by its suffix; any compressed file too, so that one in another format is named as
    compressed (:func:`load_table`) rather than as a format not recognised."""
    return path.is_file() and (
        table_suffix(path) in TABLE_SUFFIXES or compression(path) is not None
    )
