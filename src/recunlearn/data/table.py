"""What the unlearning machinery asks of a training table, so one partition and forgetting path serves
both interaction tables (:class:`~recunlearn.data.interactions.Interactions`) and prompt samples
(:class:`~recunlearn.data.samples.SampleTable`): rows taken and dropped by position, a content hash
that names exactly the rows a part was trained on, and npz persistence."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, TypeVar, runtime_checkable

import numpy as np

T = TypeVar("T", bound="Table")


@runtime_checkable
class Table(Protocol):
    """Rows with a 0/1 ``label`` column; every derived table is a new object (tables never change)."""

    @property
    def name(self) -> str: ...

    @property
    def label(self) -> np.ndarray: ...

    def __len__(self) -> int: ...

    def take(self: T, rows: np.ndarray | Sequence[int]) -> T:
        """The rows at these positions (or where a boolean mask is true), in that order."""
        ...

    def drop(self: T, mask: np.ndarray) -> T:
        """Every row but those where ``mask`` is true."""
        ...

    def content_hash(self) -> str:
        """sha256 of the rows in order: equal hashes, equal tables."""
        ...

    def save(self, path: str | Path) -> None:
        """An ``.npz`` file (no pickle) that :meth:`load` reads back."""
        ...

    @classmethod
    def load(cls: type[T], path: str | Path) -> T: ...
