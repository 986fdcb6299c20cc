"""Prompt samples of a TALLRec-style recommender, as a table of rows that deletion requests name.

A sample is (user history, target item, label) rendered as an instruction and an input text; the
model answers "Yes." or "No.". :class:`SampleTable` keeps the texts with the ids that a deletion
request can name: the sample id, the user, and the items the prompt mentions (target and history),
so "forget this user" or "forget this interaction" finds every prompt that carries it. Reading and
building samples is :mod:`recunlearn.data.tallrec`'s.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from recunlearn.errors import DataError, UnknownIdError

ALPACA_HEADER = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request."
)
ITEM_SEPARATOR = "\t"
"""Separates item ids in :attr:`SampleTable.items` (ids never contain tabs in the loaders)."""
Template = Literal["alpaca", "input"]


def render_prompt(instruction: str, text: str, template: Template = "alpaca") -> str:
    """TALLRec's Alpaca prompt ending in ``### Response:`` (for causal LMs), or the input text alone
    ('input': no boilerplate, for encoders whose context is short)."""
    if template == "input":
        return text
    return f"{ALPACA_HEADER}\n\n### Instruction:\n{instruction}\n\n### Input:\n{text}\n\n### Response:\n"


@dataclass(frozen=True, eq=False)
class SampleTable:
    """Prompt samples, one per row; columns are numpy arrays of equal length."""

    ids: np.ndarray
    """Unique sample ids (what ``DeletionRequest(samples=...)`` names)."""
    instruction: np.ndarray
    input: np.ndarray
    label: np.ndarray
    """1.0 = the user liked the target ("Yes."), 0.0 = not."""
    user: np.ndarray
    """External user id of the history ('' when the source does not say)."""
    items: np.ndarray
    """Item ids the prompt mentions, target first, joined by a tab ('' when unknown)."""
    timestamp: np.ndarray
    name: str = "samples"

    def __post_init__(self) -> None:
        n = len(self.ids)
        for column, dtype in (
            ("ids", str),
            ("instruction", str),
            ("input", str),
            ("label", np.float32),
            ("user", str),
            ("items", str),
            ("timestamp", np.int64),
        ):
            value = np.array(getattr(self, column), dtype=dtype)
            if value.ndim != 1 or len(value) != n:
                raise DataError(f"sample column {column!r} has {len(value)} rows, expected {n}")
            value.setflags(write=False)
            object.__setattr__(self, column, value)
        if len(set(self.ids.tolist())) != n:
            raise DataError(f"{self.name}: sample ids are not unique")
        if n and not np.isin(self.label, (0.0, 1.0)).all():
            raise DataError(f"{self.name}: labels must be 0 or 1")

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        rate = float(self.label.mean()) if len(self) else 0.0
        return f"SampleTable({self.name!r}: {len(self):,} samples, positive rate {rate:.3f})"

    # derived tables ---------------------------------------------------------------------------------
    def take(self, rows: np.ndarray | Sequence[int]) -> SampleTable:
        rows = np.asarray(rows)
        return SampleTable(**{c: getattr(self, c)[rows] for c in SAMPLE_COLUMNS}, name=self.name)

    def drop(self, mask: np.ndarray) -> SampleTable:
        return self.take(~np.asarray(mask, dtype=bool))

    def with_name(self, name: str) -> SampleTable:
        return SampleTable(**{c: getattr(self, c) for c in SAMPLE_COLUMNS}, name=name)

    def prompts(self, template: Template = "alpaca") -> list[str]:
        return [
            render_prompt(i, t, template)
            for i, t in zip(self.instruction.tolist(), self.input.tolist())
        ]

    def positions(self, sample_ids: Sequence[str]) -> np.ndarray:
        """Row positions of sample ids; unknown ids raise :class:`UnknownIdError` naming them."""
        lookup = {s: i for i, s in enumerate(self.ids.tolist())}
        missing = [s for s in sample_ids if s not in lookup]
        if missing:
            raise UnknownIdError(
                f"unknown sample id(s): {', '.join(map(repr, missing[:5]))}"
                + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            )
        return np.fromiter((lookup[s] for s in sample_ids), np.int64, len(sample_ids))

    def mentioned_items(self) -> set[str]:
        """Every item id some prompt mentions (as target or in the history)."""
        return {i for row in self.items.tolist() if row for i in row.split(ITEM_SEPARATOR)}

    def mentions(self, items: Sequence[str]) -> np.ndarray:
        """Rows whose prompt mentions any of the item ids (as target or in the history)."""
        wanted = set(map(str, items))
        return np.array(
            [
                bool(wanted.intersection(row.split(ITEM_SEPARATOR))) if row else False
                for row in self.items.tolist()
            ],
            dtype=bool,
        )

    # identity and persistence ------------------------------------------------------------------------
    def content_hash(self) -> str:
        """sha256 of every column in row order (what an adapter's training data was); each text is
        preceded by its length, so no two different tables (texts holding separators included) share it."""
        digest = hashlib.sha256(b"recunlearn samples v2\0")
        for column in SAMPLE_COLUMNS:
            value = getattr(self, column)
            if value.dtype.kind != "U":
                digest.update(np.ascontiguousarray(value).tobytes())
                continue
            for text in value.tolist():
                encoded = text.encode("utf-8")
                digest.update(len(encoded).to_bytes(8, "little") + encoded)
        return digest.hexdigest()

    def save(self, path: str | Path) -> None:
        with open(path, "wb") as fh:
            np.savez_compressed(
                fh, **{c: getattr(self, c) for c in SAMPLE_COLUMNS}, name=np.array(self.name)
            )

    @classmethod
    def load(cls, path: str | Path) -> SampleTable:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"no such sample file: {path}")
        if not zipfile.is_zipfile(path):  # np.load would return a bare array for .npy
            raise DataError(f"{path} is not an .npz archive (write one with SampleTable.save)")
        try:
            with np.load(path, allow_pickle=False) as z:
                return cls(**{c: z[c] for c in SAMPLE_COLUMNS}, name=str(z["name"]))
        except (KeyError, ValueError, OSError) as exc:
            raise DataError(f"cannot read samples from {path}: {exc}") from exc

    def to_records(self) -> list[dict[str, Any]]:
        """TALLRec's JSON records (``instruction`` / ``input`` / ``output``) plus our ids."""
        return [
            {
                "instruction": ins,
                "input": text,
                "output": "Yes." if lab else "No.",
                "id": sid,
                "user": user,
                "items": items.split(ITEM_SEPARATOR) if items else [],
                "timestamp": stamp,
            }
            for sid, ins, text, lab, user, items, stamp in zip(
                self.ids.tolist(),
                self.instruction.tolist(),
                self.input.tolist(),
                self.label.tolist(),
                self.user.tolist(),
                self.items.tolist(),
                self.timestamp.tolist(),
            )
        ]


SAMPLE_COLUMNS = ("ids", "instruction", "input", "label", "user", "items", "timestamp")
"""The per-row arrays of a :class:`SampleTable`, in the order its hash and files use."""
