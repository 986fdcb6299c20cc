"""Datasets by name or path: ``load_dataset("ml-100k")``, ``load_dataset("path/to/BX-Book-Ratings.csv")``.

Named datasets are registered with :func:`register_dataset`; a path is recognised by the files it
holds, through detectors registered with :func:`register_detector` (first match wins, so specific
formats come before the catch-all CSV/Parquet table). Options given to :func:`load_dataset` go to
the loader, and an option the loader does not take is an error naming the ones it does.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

from pydantic import ValidationError, validate_call

from recunlearn.data import download, loaders, movielens, synthetic
from recunlearn.data.interactions import Interactions
from recunlearn.errors import ConfigError, DataError, validation_problems

_NAMED: dict[str, tuple[Callable[..., Interactions], str]] = {}
_DETECTORS: list[tuple[str, Callable[[Path], bool], Callable[..., Interactions]]] = []


def register_dataset(name: str, loader: Callable[..., Interactions], description: str) -> None:
    _NAMED[name] = (loader, description)


def register_detector(
    matches: Callable[[Path], bool], loader: Callable[..., Interactions], name: str | None = None
) -> None:
    """A loader (called as ``loader(path, **options)``) for paths that ``matches`` recognises."""
    _DETECTORS.append((name or getattr(loader, "__name__", "loader"), matches, loader))


def available_datasets() -> dict[str, str]:
    return {name: desc for name, (_, desc) in sorted(_NAMED.items())}


def _call(what: str, loader: Callable[..., Interactions], *args, **options) -> Interactions:
    """Call ``loader``, first checking that it takes every option given."""
    parameters = inspect.signature(loader).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    accepted = [
        n
        for n, p in list(parameters.items())[len(args) :]
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]
    unknown = sorted(set(options) - set(accepted)) if not takes_any else []
    if unknown:
        raise ConfigError(f"{what} takes no option(s) {unknown}; it takes {accepted or 'none'}")
    if not options:
        return loader(*args)
    # options arrive as text or JSON from the command line: checked against the loader's annotations,
    # so that item_first=False is False, not a non-empty (true) string
    checked = validate_call(loader, config={"arbitrary_types_allowed": True})
    try:
        return checked(*args, **options)
    except ValidationError as exc:
        raise ConfigError(f"{what}: {validation_problems(exc)}") from None


def load_dataset(name_or_path: str | Path, **options) -> Interactions:
    """Load a named dataset (see :func:`available_datasets`) or a file/folder in a known format."""
    key = str(name_or_path)
    if key in _NAMED:
        return _call(f"dataset {key!r}", _NAMED[key][0], **options)
    path = Path(key).expanduser()
    if not path.exists():
        raise DataError(
            f"{key!r} is neither a known dataset ({', '.join(sorted(_NAMED))}) nor an existing path"
        )
    for format_name, matches, loader in _DETECTORS:
        if matches(path):
            return _call(f"{path} ({format_name})", loader, path, **options)
    raise DataError(
        f"{path}: format not recognised (expected MovieLens u.data/ratings.dat, RecBole .inter, "
        "BookCrossing BX-Book-Ratings.csv, Amazon ratings CSV, a CSV/TSV/Parquet table with a "
        "header, or a saved .npz)"
    )


def _in_folder_or_named(file_name: str) -> Callable[[Path], bool]:
    return lambda p: (p / file_name).is_file() if p.is_dir() else p.name == file_name


def _folder(path: Path) -> Path:
    return path if path.is_dir() else path.parent


def _load_movielens_100k(path: Path) -> Interactions:
    return movielens.load_movielens_100k(_folder(path))


def _load_movielens_1m(path: Path) -> Interactions:
    return movielens.load_movielens_1m(_folder(path))


def _load_atomic(path: Path) -> Interactions:
    inter = path if path.suffix == ".inter" else sorted(path.glob("*.inter"))[0]
    return movielens.load_atomic(inter)


def _load_saved(path: Path) -> Interactions:
    return Interactions.load(path)


def _load_grouplens_100k(base_url: str | None = None, cache: str | None = None) -> Interactions:
    return movielens.load_movielens_100k(download.fetch("ml-100k", base_url=base_url, cache=cache))


def _register_builtin() -> None:
    register_dataset(
        "ml-100k",
        movielens.load_embedded_movielens_100k,
        "MovieLens-100K with titles, from the installed recbole wheel (no download)",
    )
    register_dataset(
        "ml-100k-download",
        _load_grouplens_100k,
        "MovieLens-100K downloaded from GroupLens on first use into the cache (sha256-pinned)",
    )
    register_dataset(
        "synthetic",
        synthetic.synthetic,
        "seeded synthetic log with latent genres and genre-worded titles (options: n_interactions, "
        "n_users, n_items, n_genres, seed, ...)",
    )
    register_detector(_in_folder_or_named("u.data"), _load_movielens_100k, "MovieLens-100K")
    register_detector(_in_folder_or_named("ratings.dat"), _load_movielens_1m, "MovieLens-1M")
    register_detector(
        lambda p: p.suffix == ".inter" or (p.is_dir() and any(p.glob("*.inter"))),
        _load_atomic,
        "RecBole atomic files",
    )
    register_detector(loaders.is_bookcrossing, loaders.load_bookcrossing, "BookCrossing")
    register_detector(
        lambda p: p.is_file() and p.suffix == ".npz", _load_saved, "saved Interactions"
    )
    register_detector(loaders.is_amazon, loaders.load_amazon, "Amazon ratings CSV")
    register_detector(loaders.is_table, loaders.load_table, "CSV/TSV/Parquet table")


_register_builtin()
