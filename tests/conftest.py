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


def ml100k_path() -> Path:
    from recunlearn.data.movielens import shared_movielens_100k_path

    return shared_movielens_100k_path()


@pytest.fixture(scope="session")
def ml100k() -> Interactions:
    """MovieLens-100K from ../shared/data (CI always has it); a missing copy is a failure, not a skip."""
    from recunlearn.data.movielens import load_movielens_100k

    return load_movielens_100k(ml100k_path())
