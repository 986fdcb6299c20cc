"""Shared fixtures: a tiny dataset with a known structure, and MovieLens-100K from ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recunlearn.data import Interactions, Split, random_split

os.environ.setdefault("RECUNLEARN_PROGRESS", "0")
os.environ.setdefault("RECUNLEARN_DEVICE", "cpu")


def make_tiny(
    n_users: int = 60, n_items: int = 40, density: float = 0.35, seed: int = 0
) -> Interactions:
    """Users and items in two latent groups; a user likes items of their own group (85% of the time)."""
    rng = np.random.default_rng(seed)
    ug = rng.integers(0, 2, n_users)
    ig = rng.integers(0, 2, n_items)
    rows = [(u, i) for u in range(n_users) for i in range(n_items) if rng.random() < density]
    users, items = np.array(rows).T
    agree = ug[users] == ig[items]
    like = np.where(rng.random(len(users)) < 0.85, agree, ~agree)
    rating = np.where(like, rng.integers(4, 6, len(users)), rng.integers(1, 4, len(users)))
    frame = pd.DataFrame(
        {
            "user": [f"u{u}" for u in users],
            "item": [f"i{i}" for i in items],
            "rating": rating,
            "timestamp": rng.integers(0, 10**6, len(users)),
        }
    )
    titles = {f"i{i}": f"Movie {i} ({'Drama' if ig[i] else 'Comedy'})" for i in range(n_items)}
    return Interactions.from_frame(frame, threshold=3, titles=titles, name="tiny")


@pytest.fixture(scope="session")
def tiny() -> Interactions:
    return make_tiny()


@pytest.fixture(scope="session")
def tiny_split(tiny) -> Split:
    return random_split(tiny, (0.6, 0.2, 0.2), seed=0)


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
