"""TALLRec's prompt samples: read from (and written to) its JSON files, or built from interaction
histories, and split as its experiments do."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

import numpy as np

from recunlearn.data.interactions import Interactions
from recunlearn.data.samples import ITEM_SEPARATOR, SAMPLE_COLUMNS, SampleTable
from recunlearn.errors import DataError

INSTRUCTIONS = {
    "movie": "Given the user's preference and unpreference, identify whether the user will like the target "
    'movie by answering "Yes." or "No.".',
    "book": "Given the user's preference and unpreference, identify whether the user will like the target "
    'book by answering "Yes." or "No.".',
}


def read_tallrec_json(path: str | Path, name: str | None = None) -> SampleTable:
    """A TALLRec data file: a JSON list of ``{"instruction", "input", "output"}`` records.

    ``output`` must start with the word "Yes" or "No". Optional ``id``, ``user``, ``items`` and
    ``timestamp`` fields (as :meth:`SampleTable.to_records` writes) are kept; without ``id`` the
    sample id is the record's position, and without ``timestamp`` the position orders the samples.
    """
    path = Path(path)
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a readable JSON file ({exc})") from exc
    if not isinstance(records, list) or not records:
        raise DataError(f"{path}: expected a non-empty JSON list of records")
    columns: dict[str, list[Any]] = {c: [] for c in SAMPLE_COLUMNS}
    for position, record in enumerate(records):
        where = f"{path}: record {position}"
        if not isinstance(record, dict) or not {"instruction", "input", "output"} <= set(record):
            raise DataError(f"{where} lacks instruction/input/output")
        for field in ("instruction", "input", "output"):
            if not isinstance(record[field], str):
                raise DataError(f"{where}: {field} must be text, got {record[field]!r}")
        answer = re.match(r"(yes|no)\b", record["output"].strip().lower())
        if answer is None:
            raise DataError(f"{where} has output {record['output']!r}; expected 'Yes.' or 'No.'")
        sample_id, user = record.get("id", position), record.get("user", "")
        if (
            not isinstance(sample_id, (str, int))
            or isinstance(sample_id, bool)
            or not isinstance(user, (str, int))
        ):
            raise DataError(
                f"{where}: id and user must be text or integers, got {sample_id!r} and {user!r}"
            )
        items = record.get("items", [])
        if not isinstance(items, list) or not all(isinstance(i, (str, int)) for i in items):
            raise DataError(f"{where}: items must be a list of item ids, got {items!r}")
        stamp = record.get("timestamp", position)
        if not isinstance(stamp, int) or isinstance(stamp, bool):
            raise DataError(f"{where}: timestamp must be an integer (Unix seconds), got {stamp!r}")
        columns["ids"].append(str(sample_id))
        columns["instruction"].append(record["instruction"])
        columns["input"].append(record["input"])
        columns["label"].append(1.0 if answer.group(1) == "yes" else 0.0)
        columns["user"].append(str(user))
        columns["items"].append(ITEM_SEPARATOR.join(map(str, items)))
        columns["timestamp"].append(stamp)
    return SampleTable(**columns, name=name or path.stem)


def write_tallrec_json(samples: SampleTable, path: str | Path) -> None:
    Path(path).write_text(
        json.dumps(samples.to_records(), indent=1, ensure_ascii=False), encoding="utf-8"
    )


# building samples from interaction histories ------------------------------------------------------------
def _item_text(data: Interactions, item: int, style: str) -> str:
    title = (
        data.item_title[item]
        if data.item_title is not None and data.item_title[item]
        else data.items.ids[item]
    )
    if style == "book" and data.item_author is not None and data.item_author[item]:
        return f'"{title}" written by {data.item_author[item]}'
    return f'"{title}"'


def _input_text(
    data: Interactions, history: np.ndarray, liked: np.ndarray, target: int, style: str
) -> str:
    noun = "movie" if style == "movie" else "book"
    preference = ", ".join(_item_text(data, i, style) for i in history[liked])
    unpreference = ", ".join(_item_text(data, i, style) for i in history[~liked])
    return (
        f"User Preference: {preference}\nUser Unpreference: {unpreference}\n"
        f"Whether the user will like the target {noun} {_item_text(data, target, style)}?"
    )


def build_samples(
    data: Interactions,
    style: Literal["movie", "book"] = "movie",
    history: int = 10,
    max_samples: int | None = 10_000,
    seed: int = 0,
) -> SampleTable:
    """TALLRec's samples from a labelled interaction table.

    'movie': per user in time order, every window of ``history`` consecutive rows followed by a target
    row gives one sample (liked history items under "User Preference", the others under "User
    Unpreference"); the latest ``max_samples`` windows by target time are kept (TALLRec: 10,000).
    'book': one sample per user with at least 4 ratings: a random target and up to ``history`` of the
    user's other items, shuffled (seeded).
    Sample ids are ``user:position`` ('movie', position in the user's time order) or ``user:target``.
    """
    if data.item_title is None:
        raise DataError(f"{data.name}: building prompts needs item titles")
    if history < 1:
        raise DataError(f"history must be at least 1, got {history}")
    if max_samples is not None and max_samples < 1:  # [-0:] would keep every sample
        raise DataError(f"max_samples must be at least 1 (or None for all), got {max_samples}")
    order = np.lexsort((data.item, data.timestamp, data.user))
    user, item, label, stamp = (
        data.user[order],
        data.item[order],
        data.label[order] > 0,
        data.timestamp[order],
    )
    starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])
    ends = np.r_[starts[1:], len(user)]
    rng = np.random.default_rng(seed)
    columns: dict[str, list[Any]] = {c: [] for c in SAMPLE_COLUMNS}
    instruction = INSTRUCTIONS[style]
    for start, end in zip(starts.tolist(), ends.tolist()):
        uid = str(data.users.ids[user[start]])
        if style == "movie":
            windows = [(np.arange(j - history, j), j) for j in range(start + history, end)]
        else:
            if end - start < 4:
                continue
            rows = rng.permutation(np.arange(start, end))
            windows = [(rows[1 : 1 + history], rows[0])]
        for hist, target in windows:
            columns["ids"].append(
                f"{uid}:{target - start}"
                if style == "movie"
                else f"{uid}:{data.items.ids[item[target]]}"
            )
            columns["instruction"].append(instruction)
            columns["input"].append(_input_text(data, item[hist], label[hist], item[target], style))
            columns["label"].append(float(label[target]))
            columns["user"].append(uid)
            columns["items"].append(
                ITEM_SEPARATOR.join(data.items.ids[np.r_[item[target], item[hist]]].tolist())
            )
            columns["timestamp"].append(int(stamp[target]))
    samples = SampleTable(**columns, name=f"{data.name}/{style}")
    if not len(samples):
        raise DataError(
            f"{data.name}: no user has more than {history} interactions to build a sample from"
        )
    if max_samples is not None and len(samples) > max_samples:
        latest = np.argsort(samples.timestamp, kind="stable")[-max_samples:]
        samples = samples.take(np.sort(latest))
    return samples


def split_samples(
    samples: SampleTable,
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    by: Literal["time", "user"] = "time",
    seed: int = 0,
) -> tuple[SampleTable, SampleTable, SampleTable]:
    """TALLRec's splits: 80/10/10 in time order (movies), or by user (books: a user's samples stay together)."""
    if len(ratios) != 3 or min(ratios) < 0 or not np.isclose(sum(ratios), 1.0):
        raise DataError(
            f"ratios must be three non-negative numbers summing to 1, got {list(ratios)}"
        )
    if by == "time":
        order = np.argsort(samples.timestamp, kind="stable")
        cut = np.cumsum([int(round(r * len(samples))) for r in ratios[:2]])
        parts = np.split(order, cut)
    else:
        users = np.unique(samples.user)
        shuffled = np.random.default_rng(seed).permutation(users)
        cut = np.cumsum([int(round(r * len(users))) for r in ratios[:2]])
        groups = np.split(shuffled, cut)
        parts = [np.flatnonzero(np.isin(samples.user, g)) for g in groups]
    names = ("train", "valid", "test")
    return tuple(
        samples.take(np.sort(p)).with_name(f"{samples.name}/{n}") for p, n in zip(parts, names)
    )  # type: ignore[return-value]


def subsample(samples: SampleTable, n: int | None, seed: int = 0) -> SampleTable:
    """``n`` random samples (kept in their original order); all when ``n`` is None or too large."""
    if n is None or n >= len(samples):
        return samples
    rows = np.sort(np.random.default_rng(seed).choice(len(samples), n, replace=False))
    return samples.take(rows)
