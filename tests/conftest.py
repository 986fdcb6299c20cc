"""Shared fixtures: a tiny dataset with a known structure, and MovieLens-100K from ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from recunlearn import testing
from recunlearn.data import Interactions, Split
from recunlearn.testing import make_tiny

os.environ.setdefault("RECUNLEARN_PROGRESS", "0")
os.environ.setdefault("RECUNLEARN_DEVICE", "cpu")


@pytest.fixture(scope="session")
def tiny() -> Interactions:
    return make_tiny()


@pytest.fixture(scope="session")
def tiny_split() -> Split:
    return testing.tiny_split()


SHARED_ML100K_ENV = "RECUNLEARN_ML100K"
"""A folder with MovieLens-100K's u.data / u.item, in place of this repository's ../shared copy."""


def ml100k_path() -> Path:
    """``$RECUNLEARN_ML100K``, else ``../shared/data/ml-100k`` beside the working directory or the
    repository (this repository's layout, so the tests know it and the library does not)."""
    if os.environ.get(SHARED_ML100K_ENV):
        return Path(os.environ[SHARED_ML100K_ENV])
    candidates = [
        Path.cwd() / "../shared/data/ml-100k",
        Path(__file__).resolve().parents[1] / "../shared/data/ml-100k",
    ]
    for candidate in candidates:
        if (candidate / "u.data").is_file():
            return candidate.resolve()
    return candidates[0]


@pytest.fixture(scope="session")
def ml100k() -> Interactions:
    """MovieLens-100K from ../shared/data (CI always has it); a missing copy is a failure, not a skip."""
    from recunlearn.data.movielens import load_movielens_100k

    return load_movielens_100k(ml100k_path())
