"""Deletion requests and the deletion sets used to study them.

A :class:`DeletionRequest` is what a user (or an operator) asks to forget: interaction pairs, whole
users, whole items, or prompt samples of a language-model recommender. It names data by external id,
so it survives re-indexing and can be stored as JSON by the service.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from recunlearn.data.interactions import Interactions, Vocabulary, member_mask
from recunlearn.errors import ConfigError, EmptyRequestError, UnknownIdError


def _new_id() -> str:
    return uuid.uuid4().hex


class DeletionRequest(BaseModel):
    """Data to forget, by external id. At least one of the lists must be non-empty."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    request_id: str = Field(default_factory=_new_id, min_length=1, max_length=200)
    """Client-chosen id; resubmitting the same id is idempotent in the service."""
    pairs: tuple[tuple[str, str], ...] = ()
    """(user, item) interactions to remove."""
    users: tuple[str, ...] = ()
    """Users all of whose interactions are removed."""
    items: tuple[str, ...] = ()
    """Items all of whose interactions are removed."""
    samples: tuple[str, ...] = ()
    """Sample ids of a language-model recommender's training prompts."""

    @field_validator("pairs", mode="before")
    @classmethod
    def _pairs_as_strings(cls, value: Iterable) -> tuple:
        """Each pair must be a (user, item) sequence of two: a bare pair of ids passed as the list would
        otherwise be split character by character ('12' -> user '1', item '2'), naming other users' rows."""
        if isinstance(value, (str, bytes)):
            raise ValueError("pairs must be a list of [user, item] pairs, not a string")
        pairs = []
        for pair in value:
            if (
                isinstance(pair, (str, bytes, int))
                or not hasattr(pair, "__len__")
                or len(pair) != 2
            ):
                raise ValueError(
                    f"each pair must be [user, item], got {pair!r}; "
                    "a single pair goes in a list: pairs=[[user, item]]"
                )
            pairs.append((str(pair[0]), str(pair[1])))
        return tuple(pairs)

    @field_validator("users", "items", "samples", mode="before")
    @classmethod
    def _ids_as_strings(cls, value: Iterable) -> tuple:
        if isinstance(value, (str, int)):
            value = [value]
        return tuple(str(v) for v in value)

    def __init__(self, **data):
        super().__init__(**data)
        if not (self.pairs or self.users or self.items or self.samples):
            raise EmptyRequestError("deletion request names no pairs, users, items or samples")

    @property
    def named_users(self) -> tuple[str, ...]:
        """The users it names, whole or through a pair (in order; a user named twice appears twice)."""
        return (*self.users, *(p[0] for p in self.pairs))

    @property
    def named_items(self) -> tuple[str, ...]:
        """The items it names, whole or through a pair."""
        return (*self.items, *(p[1] for p in self.pairs))

    @property
    def size(self) -> int:
        return len(self.pairs) + len(self.users) + len(self.items) + len(self.samples)

    def known_to(self, data: Interactions) -> DeletionRequest | None:
        """The request less the ids ``data``'s vocabularies do not hold (None if nothing is left): what
        still applies to a table from which some named ids have been erased."""
        users, items = data.users, data.items
        known = {
            "users": tuple(u for u in self.users if u in users),
            "items": tuple(i for i in self.items if i in items),
            "pairs": tuple(p for p in self.pairs if p[0] in users and p[1] in items),
        }
        if not any(known.values()):
            return None
        return DeletionRequest.model_construct(
            request_id=self.request_id,
            samples=(),
            users=known["users"],
            items=known["items"],
            pairs=known["pairs"],
        )

    def pair_keys(self, data: Interactions) -> np.ndarray:
        """The named pairs as ``data``'s row keys (user index x n_items + item index, as
        :attr:`Interactions.pair_keys`); raises :class:`UnknownIdError` for ids outside its vocabularies."""
        u = data.users.index([p[0] for p in self.pairs])
        return u * np.int64(data.n_items) + data.items.index([p[1] for p in self.pairs])

    def rows(self, data: Interactions, pair_keys: np.ndarray | None = None) -> np.ndarray:
        """Boolean mask of the rows of ``data`` this request removes.

        Raises :class:`UnknownIdError` if it names users or items outside the vocabularies.
        Pairs whose user and item are known but that have no row are simply not matched: the
        caller decides whether that is 'already forgotten' or 'never seen'. ``pair_keys``:
        :meth:`pair_keys` of ``data`` when the caller has it already.
        """
        mask = np.zeros(len(data), dtype=bool)
        for names, vocabulary, column in (
            (self.users, data.users, data.user),
            (self.items, data.items, data.item),
        ):
            if names:
                named = np.zeros(len(vocabulary), bool)
                named[vocabulary.index(names)] = True
                mask |= named[column]
        if self.pairs:
            mask |= member_mask(
                data.pair_keys, self.pair_keys(data) if pair_keys is None else pair_keys
            )
        if self.samples:
            raise UnknownIdError("this data has no samples; sample ids apply to prompt datasets")
        return mask

    @classmethod
    def from_rows(
        cls, data: Interactions, rows: np.ndarray, request_id: str | None = None
    ) -> DeletionRequest:
        """A request naming the (user, item) pairs of the given rows of ``data``."""
        return cls(
            pairs=data.take(rows).id_pairs(), **({"request_id": request_id} if request_id else {})
        )


def random_interactions(data: Interactions, fraction: float, seed: int = 0) -> DeletionRequest:
    """A uniformly random fraction of the rows (as a request names (user, item) pairs, it also
    removes the other rows of a chosen row's pair, where a table repeats pairs)."""
    _check_fraction(fraction)
    n = max(1, int(round(fraction * len(data))))
    rows = np.random.default_rng(seed).choice(len(data), size=n, replace=False)
    return DeletionRequest.from_rows(data, np.sort(rows))


def user_deletion(
    data: Interactions, users: Iterable[str] | None = None, n_users: int = 1, seed: int = 0
) -> DeletionRequest:
    """All interactions of the given users, or of ``n_users`` random users who have some."""
    if users is None:
        users = _random_present(data.user, data.users.ids, n_users, seed)
    return DeletionRequest(users=list(users))


def item_deletion(
    data: Interactions, items: Iterable[str] | None = None, n_items: int = 1, seed: int = 0
) -> DeletionRequest:
    """All interactions with the given items, or with ``n_items`` random items that have some."""
    if items is None:
        items = _random_present(data.item, data.items.ids, n_items, seed)
    return DeletionRequest(items=list(items))


def _random_present(codes: np.ndarray, ids: np.ndarray, n: int, seed: int) -> list[str]:
    """The ids of ``n`` random codes among those in ``codes`` (all of them if fewer), in code order."""
    present = np.unique(codes)
    chosen = np.random.default_rng(seed).choice(present, size=min(n, len(present)), replace=False)
    return ids[np.sort(chosen)].tolist()


def label_flip_attack(
    train: Interactions, fraction: float = 0.02, seed: int = 0
) -> tuple[Interactions, DeletionRequest]:
    """IFRU's 'unusable data': flip the labels of a random fraction of the training rows.

    Returns the polluted training table (what the original model trains on) and the request that
    removes the flipped rows (retraining on the rest is the exact reference). A request names
    (user, item) pairs, so where a table repeats a pair every row of a chosen pair is flipped: the
    request then removes exactly the flipped rows, never a clean copy.
    """
    _check_fraction(fraction)
    n = max(1, int(round(fraction * len(train))))
    rows = np.sort(np.random.default_rng(seed).choice(len(train), size=n, replace=False))
    keys = train.pair_keys
    rows = np.flatnonzero(member_mask(keys, keys[rows]))  # the same rows where no pair repeats
    label = train.label.copy()
    label[rows] = 1.0 - label[rows]
    return train.with_labels(label), DeletionRequest.from_rows(train, rows)


def fake_positive_attack(
    train: Interactions, fraction: float = 0.1, seed: int = 0
) -> tuple[Interactions, DeletionRequest]:
    """Noise injected into implicit feedback: positives for random (user, item) pairs the table does not
    hold, as many as ``fraction`` of its rows (accidental clicks, a bot's views, a poisoning campaign
    spread over real accounts), appended after the real rows. Returns the polluted table and the
    request that deletes the injected pairs."""
    _check_fraction(fraction)
    rng = np.random.default_rng(seed)
    n = max(1, int(round(fraction * len(train))))
    users = train.user[
        rng.integers(0, len(train), 2 * n)
    ]  # users drawn by activity, items uniformly
    items = rng.integers(0, train.n_items, 2 * n)
    keys = users * np.int64(train.n_items) + items
    fresh = ~member_mask(keys, train.pair_keys)
    _, first = np.unique(keys[fresh], return_index=True)
    chosen = np.flatnonzero(fresh)[np.sort(first)][:n]
    fake = Interactions(
        user=users[chosen],
        item=items[chosen],
        label=np.ones(len(chosen)),
        rating=np.full(len(chosen), np.nan),
        timestamp=np.zeros(len(chosen), np.int64),
        users=train.users,
        items=train.items,
        item_title=train.item_title,
        item_author=train.item_author,
    )
    polluted = train.concat(fake).with_name(f"{train.name}+fake-positives")
    return polluted, DeletionRequest.from_rows(polluted, np.arange(len(train), len(polluted)))


def fake_user_attack(
    train: Interactions, n_users: int, n_targets: int = 5, profile_size: int = 50, seed: int = 0
) -> tuple[Interactions, DeletionRequest, np.ndarray]:
    """A shilling attack on implicit feedback: ``n_users`` fake users join, each with a positive for
    every one of ``n_targets`` target items (drawn among the less popular half of the catalogue)
    and for ``profile_size`` filler items drawn by popularity, so that the targets look like what
    popular taste also likes and climb into real users' top-K lists.

    Returns the polluted training table (its user vocabulary extended by the fake users, after the
    real ones, so a real user's index is unchanged: reindex validation and test tables onto it),
    the request that deletes the fake users, and the target items' indices.
    """
    if n_users < 1 or n_targets < 1 or profile_size < 0:
        raise ConfigError(
            f"a fake-user attack needs n_users >= 1, n_targets >= 1 and profile_size >= 0, got "
            f"{n_users}, {n_targets}, {profile_size}"
        )
    rng = np.random.default_rng(seed)
    popularity = np.bincount(train.item, minlength=train.n_items).astype(np.float64)
    present = np.flatnonzero(popularity > 0)
    if n_targets + profile_size > len(present):
        raise ConfigError(
            f"a fake profile of {n_targets} targets and {profile_size} fillers needs that many items "
            f"with training rows; {len(present)} have some"
        )
    below_median = present[popularity[present] <= np.median(popularity[present])]
    targets = np.sort(
        rng.choice(below_median, size=min(n_targets, len(below_median)), replace=False)
    )
    candidates = np.setdiff1d(present, targets)
    weights = popularity[candidates] / popularity[candidates].sum()
    taken = set(train.users.ids.tolist())
    fake_ids: list[str] = []
    number = 0
    while len(fake_ids) < n_users:
        name = f"fake-{number}"
        number += 1
        if name not in taken:
            fake_ids.append(name)
    users = Vocabulary(np.concatenate([train.users.ids, np.array(fake_ids)]), kind=train.users.kind)
    fake_user, fake_item = [], []
    for offset in range(n_users):
        fillers = rng.choice(candidates, size=profile_size, replace=False, p=weights)
        profile = np.concatenate([targets, fillers])
        fake_user.append(np.full(len(profile), train.n_users + offset))
        fake_item.append(profile)
    fake = Interactions(
        user=np.concatenate(fake_user),
        item=np.concatenate(fake_item),
        label=np.ones(sum(map(len, fake_item))),
        rating=np.full(sum(map(len, fake_item)), np.nan),
        timestamp=np.zeros(sum(map(len, fake_item)), np.int64),
        users=users,
        items=train.items,
        item_title=train.item_title,
        item_author=train.item_author,
    )
    polluted = (
        train.reindexed(users, train.items).concat(fake).with_name(f"{train.name}+fake-users")
    )
    return polluted, DeletionRequest(users=fake_ids), targets


def _check_fraction(fraction: float) -> None:
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"fraction must be in (0, 1), got {fraction}")
