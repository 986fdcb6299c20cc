"""Datasets by name or path: ``load_dataset("ml-100k")``, ``load_dataset("path/to/u.data folder")``.

Named datasets are registered with :func:`register_dataset`; a path is recognised by the files it
holds. Loader modules register themselves when imported (see ``LOADER_MODULES``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from recunlearn.data.interactions import Interactions
from recunlearn.errors import DataError

_NAMED: dict[str, tuple[Callable[..., Interactions], str]] = {}
_DETECTORS: list[tuple[Callable[[Path], bool], Callable[[Path], Interactions]]] = []

LOADER_MODULES = ("recunlearn.data.movielens", "recunlearn.data.loaders", "recunlearn.data.synthetic")


def register_dataset(name: str, loader: Callable[..., Interactions], description: str) -> None:
    _NAMED[name] = (loader, description)


def register_detector(matches: Callable[[Path], bool], loader: Callable[[Path], Interactions]) -> None:
    """A loader for paths that ``matches`` recognises (first match wins)."""
    _DETECTORS.append((matches, loader))


def _import_loaders() -> None:
    for module in LOADER_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def available_datasets() -> dict[str, str]:
    _import_loaders()
    return {name: desc for name, (_, desc) in sorted(_NAMED.items())}


def load_dataset(name_or_path: str | Path, **options) -> Interactions:
    """Load a named dataset (see :func:`available_datasets`) or a file/folder in a known format."""
    _import_loaders()
    key = str(name_or_path)
    if key in _NAMED:
        return _NAMED[key][0](**options)
    path = Path(key).expanduser()
    if not path.exists():
        raise DataError(f"{key!r} is neither a known dataset ({', '.join(sorted(_NAMED))}) nor an existing path")
    for matches, loader in _DETECTORS:
        if matches(path):
            return loader(path, **options)
    raise DataError(f"{path}: format not recognised (expected MovieLens u.data/ratings.dat, RecBole .inter, "
                    "BookCrossing, Amazon or a CSV/Parquet table)")


def _register_builtin() -> None:
    from recunlearn.data import movielens as ml

    register_dataset("ml-100k", ml.load_embedded_movielens_100k,
                     "MovieLens-100K with titles, from the installed recbole wheel (no download)")
    register_dataset("ml-100k-shared", lambda: ml.load_movielens_100k(ml.shared_movielens_100k_path()),
                     "MovieLens-100K from $RECUNLEARN_ML100K or ../shared/data/ml-100k")
    register_detector(lambda p: (p / "u.data").is_file() if p.is_dir() else p.name == "u.data",
                      lambda p, **kw: ml.load_movielens_100k(p if p.is_dir() else p.parent))
    register_detector(lambda p: (p / "ratings.dat").is_file() if p.is_dir() else p.name == "ratings.dat",
                      lambda p, **kw: ml.load_movielens_1m(p if p.is_dir() else p.parent))
    register_detector(lambda p: p.suffix == ".inter" or (p.is_dir() and any(p.glob("*.inter"))),
                      lambda p, **kw: ml.load_atomic(p if p.suffix == ".inter" else next(p.glob("*.inter"))))


_register_builtin()
