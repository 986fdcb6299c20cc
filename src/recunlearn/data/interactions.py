"""The immutable interaction table every layer works on.

External ids are kept as strings (so they round-trip through npz without pickle and through JSON);
rows refer to users and items by contiguous indices into the vocabularies. Splits and subsets share
the vocabularies of the table they came from, so an index means the same user everywhere.

One class and its vocabulary: kept together because every method relies on their invariants.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recunlearn.errors import DataError, UnknownIdError

_MEMBER_TABLE = 1 << 23
"""Candidates spanning fewer keys than this are marked in a boolean table (at most 8 MB)."""


def member_mask(values: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """``np.isin(values, candidates)`` for integer keys, linear in both sizes and sorting neither (a
    request's keys against every row of the table): a boolean table over the candidates' range
    where it is small, else a hash of the candidates (pandas)."""
    values, candidates = np.asarray(values, np.int64), np.asarray(candidates, np.int64)
    if not len(values) or not len(candidates):
        return np.zeros(len(values), bool)
    low, high = int(candidates.min()), int(candidates.max())
    if high - low < _MEMBER_TABLE:
        table = np.zeros(high - low + 1, bool)
        table[candidates - low] = True
        inside = (values >= low) & (values <= high)
        mask = np.zeros(len(values), bool)
        mask[inside] = table[values[inside] - low]
        return mask
    return pd.Series(values, copy=False).isin(candidates).to_numpy()


def _frozen(array: Any, dtype: Any) -> np.ndarray:
    """A read-only array that owns its data: one made here is shared as is, anything else copied."""
    if (
        isinstance(array, np.ndarray)
        and not array.flags.writeable
        and array.base is None
        and (array.dtype == dtype or (dtype is str and array.dtype.kind == "U"))
    ):
        return array
    out = np.array(array, dtype=dtype, copy=True)
    out.setflags(write=False)
    return out


def _sealed(array: np.ndarray) -> np.ndarray:
    """A new array of this module's own, made read-only so that a table takes it without a copy."""
    array.setflags(write=False)
    return array


def _sorted_ids(values: Iterable[Any]) -> np.ndarray:
    """Unique ids as strings, in numeric order when every id is a number (so '10' follows '9')."""
    series = (
        values
        if isinstance(values, pd.Series)
        else pd.Series(values if isinstance(values, np.ndarray) else list(values))
    )
    as_str = pd.unique(series.astype(str)).astype(str)
    try:
        order = np.argsort(as_str.astype(np.float64), kind="stable")
    except ValueError:
        order = np.argsort(as_str, kind="stable")
    return as_str[order]


@dataclass(frozen=True)
class Vocabulary:
    """A bijection between external ids (strings) and indices ``0..n-1``."""

    ids: np.ndarray
    kind: str = "id"
    _index: pd.Index = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ids = (
            _frozen(np.asarray(self.ids).astype(str), dtype=str)
            if len(self.ids)
            else _frozen([], dtype="<U1")
        )
        index = pd.Index(ids, dtype=object)
        if not index.is_unique:
            raise DataError(f"{self.kind} vocabulary has duplicate ids")
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "_index", index)

    @classmethod
    def from_values(cls, values: Iterable[Any], kind: str = "id") -> Vocabulary:
        return cls(_sorted_ids(values), kind=kind)

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, external: object) -> bool:
        return str(external) in self._index

    def index(self, external: Iterable[Any] | Any) -> np.ndarray:
        """Indices of external ids; raises :class:`UnknownIdError` naming the unknown ones."""
        if isinstance(external, (str, int, np.integer)):
            external = [external]
        if isinstance(external, (list, tuple)) and len(external) <= self._SMALL:
            return self._index_small(external)
        keys = (
            external
            if isinstance(external, pd.Series)
            else pd.Series(
                external if isinstance(external, np.ndarray) else list(external), dtype=object
            )
        )
        if not pd.api.types.is_string_dtype(keys) or keys.dtype == object:
            keys = keys.astype(str)
        positions = self._index.get_indexer(keys) if len(keys) else np.empty(0, np.int64)
        if (positions < 0).any():
            self._unknown(keys[positions < 0].astype(str).tolist())
        return positions.astype(np.int64)

    _SMALL = 20_000
    """Lists up to this long (a deletion request's ids) are looked up in a dict, not through pandas."""

    def _index_small(self, external: Sequence[Any]) -> np.ndarray:
        lookup = self.__dict__.get("_lookup")
        if lookup is None:  # built on first use: a vocabulary is frozen
            lookup = dict(zip(self.ids.tolist(), range(len(self.ids))))
            self.__dict__["_lookup"] = lookup
        keys = [k if type(k) is str else str(k) for k in external]
        positions = np.fromiter((lookup.get(k, -1) for k in keys), np.int64, len(keys))
        if (positions < 0).any():
            self._unknown([keys[j] for j in np.flatnonzero(positions < 0)])
        return positions

    def _unknown(self, missing: list[str]) -> None:
        shown = ", ".join(repr(m) for m in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise UnknownIdError(f"unknown {self.kind} id(s): {shown}{more}")

    def external(self, index: np.ndarray | Sequence[int]) -> np.ndarray:
        return self.ids[np.asarray(index, dtype=np.int64)]

    def erased(self, indices: np.ndarray | Sequence[int]) -> Vocabulary:
        """The same indices with the ids at ``indices`` replaced by placeholders (``<erased N>``, N the
        index), so that a table or model keeps its shape but no longer names who was erased; an
        erased id is then unknown. A placeholder that is some real id gets primes until unique. An
        index that holds its placeholder already stays as it is; any other id is replaced, one that
        merely begins like a placeholder included."""
        ids = self.ids.astype(object)
        taken = set(self.ids.tolist())
        for index in np.unique(np.asarray(indices, np.int64)).tolist():
            if ids[index].rstrip("'") == f"{ERASED_PREFIX}{index}>":  # erased before
                continue
            placeholder = f"{ERASED_PREFIX}{index}>"
            while placeholder in taken:
                placeholder += "'"
            taken.add(placeholder)
            ids[index] = placeholder
        return Vocabulary(ids, kind=self.kind)

    def placeholders(self, ids: Sequence[str]) -> set[str]:
        """The ids among ``ids`` that are placeholders :meth:`erased` left here (``<erased N>`` at index N,
        primed if a real id had that text): they name nobody. A real id of exactly that form at that
        index cannot be told apart."""
        candidates = [i for i in ids if i.startswith(ERASED_PREFIX) and i in self]
        if not candidates:
            return set()
        return {
            i
            for i, index in zip(candidates, self.index(candidates).tolist())
            if i.rstrip("'") == f"{ERASED_PREFIX}{index}>"
        }

    def fingerprints(self) -> np.ndarray:
        """Per id, the 16-byte BLAKE2b digest of its UTF-8 text (built once: a vocabulary is frozen).

        What content hashes stand for ids with: one id's fingerprint depends on that id alone,
        where the ids' own array pads every id to the longest one's width (4 bytes a character)."""
        prints = self.__dict__.get("_fingerprints")
        if prints is None:
            prints = np.frombuffer(
                b"".join(
                    hashlib.blake2b(i.encode(), digest_size=16).digest() for i in self.ids.tolist()
                ),
                dtype="V16",
            )
            self.__dict__["_fingerprints"] = prints
        return prints


ERASED_PREFIX = "<erased "
"""How :meth:`Vocabulary.erased` placeholders begin."""


@dataclass(frozen=True, eq=False)
class Interactions:
    """Rows of (user, item, rating, label, timestamp) over shared user/item vocabularies.

    ``label`` is the binary target (1 = the user likes the item); ``rating`` keeps the raw value
    (NaN where a source has none). ``item_title`` / ``item_author`` are optional per-item texts
    used to build prompts for language-model recommenders.
    """

    user: np.ndarray
    item: np.ndarray
    label: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray
    users: Vocabulary
    items: Vocabulary
    item_title: np.ndarray | None = None
    item_author: np.ndarray | None = None
    name: str = "interactions"

    def __post_init__(self) -> None:
        n = len(self.user)
        for fname, dtype in (
            ("user", np.int64),
            ("item", np.int64),
            ("label", np.float32),
            ("rating", np.float32),
            ("timestamp", np.int64),
        ):
            arr = _frozen(getattr(self, fname), dtype)
            if arr.ndim != 1 or len(arr) != n:
                raise DataError(f"column {fname!r} has {len(arr)} rows, expected {n}")
            object.__setattr__(self, fname, arr)
        if n:
            if self.user.min() < 0 or self.user.max() >= len(self.users):
                raise DataError("user index out of the user vocabulary")
            if self.item.min() < 0 or self.item.max() >= len(self.items):
                raise DataError("item index out of the item vocabulary")
            if not np.isin(self.label, (0.0, 1.0)).all():
                raise DataError("labels must be 0 or 1")
        for fname in ("item_title", "item_author"):
            text = getattr(self, fname)
            if text is not None:
                text = _frozen(
                    text
                    if isinstance(text, np.ndarray) and text.dtype.kind == "U"
                    else [str(t) for t in text],
                    dtype=str,
                )
                if len(text) != len(self.items):
                    raise DataError(f"{fname} has {len(text)} entries for {len(self.items)} items")
                object.__setattr__(self, fname, text)

    # construction -----------------------------------------------------------------------------
    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        *,
        user: str = "user",
        item: str = "item",
        rating: str | None = "rating",
        label: str | None = None,
        timestamp: str | None = "timestamp",
        threshold: float | None = None,
        titles: Mapping[Any, str] | None = None,
        authors: Mapping[Any, str] | None = None,
        users: Vocabulary | None = None,
        items: Vocabulary | None = None,
        name: str = "interactions",
    ) -> Interactions:
        """Build from a table with named columns.

        The label is taken from ``label`` if given, else ``rating > threshold``; with neither,
        every row is a positive (implicit feedback). The default ``rating`` and ``timestamp``
        columns are optional (a ``user,item`` table of clicks loads as it is); a column named
        otherwise must be there.
        """
        rating = None if rating == "rating" and rating not in frame.columns else rating
        timestamp = (
            None if timestamp == "timestamp" and timestamp not in frame.columns else timestamp
        )
        missing = [
            c
            for c in (user, item, rating, label, timestamp)
            if c is not None and c not in frame.columns
        ]
        if missing:
            raise DataError(f"missing column(s) {missing}; the table has {list(frame.columns)}")
        if frame[[user, item]].isna().any().any():
            raise DataError("user or item column has empty values")
        users = users or Vocabulary.from_values(frame[user].astype(str), kind="user")
        items = items or Vocabulary.from_values(frame[item].astype(str), kind="item")
        raw_rating = (
            _numbers(frame, rating).to_numpy(np.float32)
            if rating is not None
            else np.full(len(frame), np.nan, np.float32)
        )
        if label is not None:
            lab = pd.to_numeric(frame[label], errors="coerce").to_numpy(np.float32)
            if np.isnan(lab).any():
                raise DataError(f"label column {label!r} has non-numeric values")
        elif threshold is not None:
            if np.isnan(raw_rating).any():
                raise DataError(f"rating column {rating!r} has non-numeric values")
            lab = (raw_rating > threshold).astype(np.float32)
        else:
            lab = np.ones(len(frame), np.float32)
        if timestamp is not None:
            stamps = _numbers(frame, timestamp)
            if (
                stamps.isna().any()
            ):  # a blank read as 0 would date the row to 1970, first in any time split
                raise DataError(
                    f"timestamp column {timestamp!r} is blank in row {int(stamps.isna().to_numpy().argmax()) + 1} "
                    "(counting from 1, without a header)"
                )
            ts = stamps.to_numpy(np.int64)
        else:
            ts = np.zeros(len(frame), np.int64)

        def text(mapping: Mapping[Any, str] | None) -> np.ndarray | None:
            if mapping is None:
                return None
            lookup = {str(k): v for k, v in mapping.items()}
            return np.array([lookup.get(i, "") for i in items.ids], dtype=str)

        return cls(
            user=users.index(frame[user].astype(str)),
            item=items.index(frame[item].astype(str)),
            label=lab,
            rating=raw_rating,
            timestamp=ts,
            users=users,
            items=items,
            item_title=text(titles),
            item_author=text(authors),
            name=name,
        )

    # basic facts --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.user)

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def pair_keys(self) -> np.ndarray:
        """One int64 key per row identifying its (user, item) pair."""
        return self.user * np.int64(self.n_items) + self.item

    def id_pairs(self) -> list[tuple[str, str]]:
        """Each row's (user id, item id), in row order."""
        return list(zip(self.users.ids[self.user].tolist(), self.items.ids[self.item].tolist()))

    def __repr__(self) -> str:
        return (
            f"Interactions({self.name!r}: {len(self):,} rows, {self.n_users:,} users, "
            f"{self.n_items:,} items, positive rate {self.label.mean() if len(self) else 0:.3f})"
        )

    # derived tables (same vocabularies) --------------------------------------------------------
    def _replace(self, **changes: Any) -> Interactions:
        fields = {
            k: getattr(self, k)
            for k in (
                "user",
                "item",
                "label",
                "rating",
                "timestamp",
                "users",
                "items",
                "item_title",
                "item_author",
                "name",
            )
        }
        fields.update(changes)
        return Interactions(**fields)

    def take(self, rows: np.ndarray | Sequence[int]) -> Interactions:
        """The given rows (a boolean mask or integer positions), in that order."""
        rows = np.asarray(rows)
        if rows.dtype != bool:
            rows = rows.astype(np.int64)  # an empty list arrives as float
        return self._replace(
            **{
                k: _sealed(getattr(self, k)[rows])
                for k in ("user", "item", "label", "rating", "timestamp")
            }
        )

    def drop(self, mask: np.ndarray) -> Interactions:
        return self.take(~np.asarray(mask, dtype=bool))

    def with_labels(self, label: np.ndarray) -> Interactions:
        return self._replace(label=label)

    def with_name(self, name: str) -> Interactions:
        return self._replace(name=name)

    def with_erased_users(self, users: np.ndarray | Sequence[int]) -> Interactions:
        """The same rows with the ids of ``users`` (indices that no row may hold) replaced by
        placeholders (:meth:`Vocabulary.erased`): what a served copy keeps of users deleted whole."""
        users = np.asarray(users, np.int64)
        if np.isin(self.user, users).any():
            raise DataError("only users without rows can be erased from the vocabulary")
        return self._replace(users=self.users.erased(users)) if len(users) else self

    def concat(self, other: Interactions) -> Interactions:
        if other.users is not self.users or other.items is not self.items:
            raise DataError("can only concatenate tables that share vocabularies")
        return self._replace(
            **{
                k: np.concatenate([getattr(self, k), getattr(other, k)])
                for k in ("user", "item", "label", "rating", "timestamp")
            }
        )

    def positives(self) -> Interactions:
        return self.take(self.label > 0)

    def compact(self) -> Interactions:
        """Rebuild the vocabularies from the users and items that occur in the rows."""
        used_u = np.flatnonzero(np.bincount(self.user, minlength=self.n_users))
        used_i = np.flatnonzero(np.bincount(self.item, minlength=self.n_items))
        users = Vocabulary(self.users.ids[used_u], kind="user")
        items = Vocabulary(self.items.ids[used_i], kind="item")
        remap_u = np.full(self.n_users, -1, np.int64)
        remap_u[used_u] = np.arange(len(used_u))
        remap_i = np.full(self.n_items, -1, np.int64)
        remap_i[used_i] = np.arange(len(used_i))
        return self._replace(
            user=remap_u[self.user],
            item=remap_i[self.item],
            users=users,
            items=items,
            item_title=None if self.item_title is None else self.item_title[used_i],
            item_author=None if self.item_author is None else self.item_author[used_i],
        )

    def reindexed(self, users: Vocabulary, items: Vocabulary) -> Interactions:
        """The same rows expressed over other vocabularies (which must contain every id used)."""
        titles = authors = None
        if self.item_title is not None:
            lookup = dict(zip(self.items.ids.tolist(), self.item_title.tolist()))
            titles = np.array([lookup.get(i, "") for i in items.ids], dtype=str)
        if self.item_author is not None:
            lookup = dict(zip(self.items.ids.tolist(), self.item_author.tolist()))
            authors = np.array([lookup.get(i, "") for i in items.ids], dtype=str)
        return self._replace(
            user=users.index(self.users.ids[self.user]),
            item=items.index(self.items.ids[self.item]),
            users=users,
            items=items,
            item_title=titles,
            item_author=authors,
        )

    def to_frame(self) -> pd.DataFrame:
        """Rows with external ids."""
        return pd.DataFrame(
            {
                "user": self.users.ids[self.user],
                "item": self.items.ids[self.item],
                "rating": self.rating,
                "label": self.label,
                "timestamp": self.timestamp,
            }
        )

    # identity ------------------------------------------------------------------------------------
    _HASH_CHUNK = 1 << 18

    def content_hash(self) -> str:
        """sha256 of the rows in order, each user and item standing as its id's fingerprint
        (:meth:`Vocabulary.fingerprints`), so audits compare across vocabularies whatever their
        indices or the width of their ids.

        Computed once per table: a table is frozen and its arrays are read-only."""
        cached = self.__dict__.get("_content_hash")
        if cached is not None:
            return cached
        h = hashlib.sha256(b"recunlearn interactions v2\0")
        for vocabulary, column in ((self.users, self.user), (self.items, self.item)):
            prints = vocabulary.fingerprints()
            for start in range(
                0, len(column), self._HASH_CHUNK
            ):  # the same bytes, without a table-sized copy
                h.update(prints[column[start : start + self._HASH_CHUNK]].tobytes())
        for column in (self.label, self.rating, self.timestamp):
            h.update(np.ascontiguousarray(column).tobytes())
        self.__dict__["_content_hash"] = h.hexdigest()
        return self.__dict__["_content_hash"]

    # persistence (npz + JSON, never pickle) --------------------------------------------------------
    def save(self, path: str | Path) -> None:
        arrays = {k: getattr(self, k) for k in _SAVED_COLUMNS}
        arrays["users"] = self.users.ids
        arrays["items"] = self.items.ids
        if self.item_title is not None:
            arrays["item_title"] = self.item_title
        if self.item_author is not None:
            arrays["item_author"] = self.item_author
        arrays["meta"] = np.array(json.dumps({"name": self.name, "format": 1}))
        # what np.savez_compressed writes, at zlib level 1: a served version is saved on every deletion,
        # and the default level costs several times more for little less space
        with (
            open(path, "wb") as fh,
            zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive,
        ):
            for name, array in arrays.items():
                with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)

    @classmethod
    def load(
        cls, path: str | Path, *, users: Vocabulary | None = None, items: Vocabulary | None = None
    ) -> Interactions:
        """Load a table saved by :meth:`save`; pass vocabularies to share them with other tables."""
        path = Path(path)
        if not path.exists():
            raise DataError(f"no such file: {path}")
        if not zipfile.is_zipfile(path):
            raise DataError(f"{path} is not an .npz archive (write one with Interactions.save)")
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        except Exception as exc:  # zipfile / format errors
            raise DataError(f"cannot read interactions from {path}: {exc}") from exc
        missing = [k for k in (*_SAVED_COLUMNS, "users", "items", "meta") if k not in data]
        if missing:
            raise DataError(
                f"{path} is not an interactions table written by Interactions.save: "
                f"it lacks {', '.join(missing)}"
            )
        try:
            meta = json.loads(str(data.pop("meta")))
            name = meta["name"]
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{path}: its meta record is damaged ({exc!r})") from None
        wrong = [k for k in ("user", "item", "timestamp") if data[k].dtype.kind not in "iu"]
        if wrong:  # a float index would be truncated to another user or item without a word
            raise DataError(
                f"{path}: column(s) {', '.join(wrong)} must hold integers, not "
                f"{', '.join(str(data[k].dtype) for k in wrong)}"
            )
        user_vocab = Vocabulary(data.pop("users"), kind="user")
        item_vocab = Vocabulary(data.pop("items"), kind="item")
        for given, stored in ((users, user_vocab), (items, item_vocab)):
            if given is not None and not np.array_equal(given.ids, stored.ids):
                raise DataError(
                    f"{path}: stored {stored.kind} vocabulary differs from the one given"
                )
        columns = {k: data[k] for k in (*_SAVED_COLUMNS, "item_title", "item_author") if k in data}
        return cls(users=users or user_vocab, items=items or item_vocab, name=name, **columns)


_SAVED_COLUMNS = ("user", "item", "label", "rating", "timestamp")
"""The per-row arrays :meth:`Interactions.save` writes (besides the vocabularies, text and meta)."""


def parse_numbers(raw: pd.Series) -> tuple[pd.Series, int | None]:
    """A column as numbers, blank cells (missing, empty or spaces) NaN, and the position of the first
    cell that is neither blank nor a finite number (None when there is none): an infinite rating or
    time has no place in a model or a split."""
    values = pd.to_numeric(raw, errors="coerce")
    infinite = np.isinf(values.to_numpy(np.float64, na_value=np.nan))
    if pd.api.types.is_numeric_dtype(raw):
        bad = infinite
    else:
        blank = raw.isna() | (raw.astype(str).str.strip() == "")
        bad = (values.isna() & ~blank).to_numpy() | infinite
    return values, int(bad.argmax()) if bad.any() else None


def number_kind(value: Any) -> str:
    """What a cell :func:`parse_numbers` flagged fails to be: a 'number', or ('inf') a 'finite number'."""
    infinite = np.isinf(pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0])
    return "finite number" if infinite else "number"


def _numbers(frame: pd.DataFrame, column: str) -> pd.Series:
    """:func:`parse_numbers` of a column; a value that is not a finite number raises, rather than
    silently becoming a missing rating or a zero timestamp."""
    values, bad = parse_numbers(frame[column])
    if bad is not None:
        value = frame[column].iloc[bad]
        shown = value if isinstance(value, str) else str(value)
        raise DataError(f"column {column!r}: row {bad} holds {shown!r}, not a {number_kind(value)}")
    return values


@dataclass(frozen=True)
class Split:
    """Train / validation / test tables over the same vocabularies."""

    train: Interactions
    valid: Interactions
    test: Interactions

    def describe(self) -> dict[str, Any]:
        return {
            name: {
                "rows": len(t),
                "users": int(len(np.unique(t.user))),
                "items": int(len(np.unique(t.item))),
                "positive_rate": round(float(t.label.mean()), 4) if len(t) else None,
            }
            for name, t in (("train", self.train), ("valid", self.valid), ("test", self.test))
        }
