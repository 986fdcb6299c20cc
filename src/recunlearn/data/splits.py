"""Label binarisation, k-core filtering and train/validation/test splits."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recunlearn.data.interactions import Interactions, Split, member_mask
from recunlearn.errors import DataError


def binarize(data: Interactions, threshold: float) -> Interactions:
    """Label = rating > threshold (IFRU: > 3 on MovieLens, > 4 on Amazon, > 5 on BookCrossing)."""
    if np.isnan(data.rating).any():
        raise DataError(f"{data.name}: cannot binarise, some ratings are missing")
    return data.with_labels((data.rating > threshold).astype(np.float32))


def k_core(data: Interactions, k: int) -> Interactions:
    """Iteratively keep users and items with at least ``k`` interactions; vocabularies compacted."""
    if k <= 1:
        return data.compact()
    keep = np.ones(len(data), dtype=bool)
    while True:
        u_count = np.bincount(data.user[keep], minlength=data.n_users)
        i_count = np.bincount(data.item[keep], minlength=data.n_items)
        new_keep = keep & (u_count[data.user] >= k) & (i_count[data.item] >= k)
        if new_keep.sum() == keep.sum():
            break
        keep = new_keep
    if not keep.any():
        raise DataError(f"{data.name}: nothing left after the {k}-core filter")
    return data.take(keep).compact()


def _keep_seen(train: Interactions, other: Interactions) -> Interactions:
    """The rows of ``other`` whose user and item occur in ``train`` but whose pair does not: a repeated
    (user, item) row (a re-rating) on both sides of a split would test the model on a pair it trained
    on. Tables without repeated pairs lose only the unseen users and items."""
    seen_u = np.zeros(train.n_users, bool)
    seen_u[train.user] = True
    seen_i = np.zeros(train.n_items, bool)
    seen_i[train.item] = True
    keep = seen_u[other.user] & seen_i[other.item]
    keep &= ~member_mask(other.pair_keys, train.pair_keys)
    return other.take(keep)


def _without_test_pairs(valid: Interactions, test: Interactions) -> Interactions:
    """``valid`` less the rows whose (user, item) pair the test set holds: choosing epochs on a pair
    that is then tested leaks the test set into model selection (only tables with repeats have any)."""
    return valid.take(~member_mask(valid.pair_keys, test.pair_keys))


def random_split(
    data: Interactions, ratios: Sequence[float] = (0.6, 0.2, 0.2), seed: int = 1024
) -> Split:
    """Shuffle rows and cut by ``ratios`` (IFRU's 60/20/20); valid/test keep users and items seen in train."""
    if len(ratios) != 3 or min(ratios) < 0 or not np.isclose(sum(ratios), 1.0):
        raise DataError(
            f"ratios must be three non-negative numbers summing to 1, got {list(ratios)}"
        )
    order = np.random.default_rng(seed).permutation(len(data))
    n_train = int(round(ratios[0] * len(data)))
    n_valid = int(round(ratios[1] * len(data)))
    train = data.take(order[:n_train]).with_name(f"{data.name}/train")
    valid = _keep_seen(train, data.take(order[n_train : n_train + n_valid])).with_name(
        f"{data.name}/valid"
    )
    test = _keep_seen(train, data.take(order[n_train + n_valid :])).with_name(f"{data.name}/test")
    return Split(train, _without_test_pairs(valid, test), test)


def temporal_leave_last(data: Interactions, n_last: int = 1) -> Split:
    """Per user, the last ``n_last`` rows by time go to test and the ``n_last`` before to validation."""
    order = np.lexsort((np.arange(len(data)), data.timestamp, data.user))
    users = data.user[order]
    starts = np.r_[0, np.flatnonzero(np.diff(users)) + 1]
    counts = np.diff(np.r_[starts, len(users)])
    rank_from_end = np.repeat(starts + counts, counts) - np.arange(len(users)) - 1
    enough = np.repeat(counts > 2 * n_last, counts)
    test_rows = order[enough & (rank_from_end < n_last)]
    valid_rows = order[enough & (rank_from_end >= n_last) & (rank_from_end < 2 * n_last)]
    train_mask = np.ones(len(data), bool)
    train_mask[test_rows] = False
    train_mask[valid_rows] = False
    train = data.take(np.flatnonzero(train_mask)).with_name(f"{data.name}/train")
    valid = _keep_seen(train, data.take(np.sort(valid_rows))).with_name(f"{data.name}/valid")
    test = _keep_seen(train, data.take(np.sort(test_rows))).with_name(f"{data.name}/test")
    return Split(train, _without_test_pairs(valid, test), test)


def ifru_protocol(
    data: Interactions, threshold: float = 3.0, k: int = 5, seed: int = 1024
) -> Split:
    """The IFRU paper's preparation: binarise, k-core, random 60/20/20 keeping seen users/items."""
    return random_split(k_core(binarize(data, threshold), k), (0.6, 0.2, 0.2), seed)


def positive_interactions(data: Interactions, threshold: float | None) -> Interactions:
    """The rows that count as positive feedback, every label 1: ratings above ``threshold`` (as
    :func:`binarize` reads it: 3 keeps MovieLens' 4 and 5 stars), or every row with ``threshold=None``
    (clicks, views, purchases; a table without ratings)."""
    if threshold is None:
        return data.with_labels(np.ones(len(data), np.float32))
    if np.isnan(data.rating).any():
        raise DataError(
            f"{data.name}: some rows have no rating; use threshold=None to count every row as positive"
        )
    kept = data.take(np.flatnonzero(data.rating > threshold))
    if not len(kept):
        raise DataError(f"{data.name}: no rating is above the threshold {threshold}")
    return kept.with_labels(np.ones(len(kept), np.float32))


def per_user_split(
    data: Interactions,
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 1024,
    by: str = "random",
) -> Split:
    """Each user's rows cut by ``ratios``: shuffled (``by="random"``, seeded) or in time order
    (``by="time"``: the latest rows to test, the ones before to validation). Every user keeps at
    least one training row; validation and test keep items seen in training, and no pair twice."""
    if len(ratios) != 3 or min(ratios) < 0 or not np.isclose(sum(ratios), 1.0):
        raise DataError(
            f"ratios must be three non-negative numbers summing to 1, got {list(ratios)}"
        )
    if by not in ("random", "time"):
        raise DataError(f"a per-user split is by 'random' or 'time', got {by!r}")
    rng = np.random.default_rng(seed)
    key = rng.random(len(data)) if by == "random" else np.asarray(data.timestamp, np.float64)
    if by == "time" and np.isnan(key).any():
        raise DataError(f"{data.name}: a split by time needs a timestamp on every row")
    order = np.lexsort((np.arange(len(data)), key, data.user))
    users = data.user[order]
    starts = np.r_[0, np.flatnonzero(np.diff(users)) + 1] if len(users) else np.zeros(0, np.int64)
    counts = np.diff(np.r_[starts, len(users)])
    position = np.arange(len(users)) - np.repeat(starts, counts)  # rank within the user, 0 = first
    n_test = np.floor(counts * ratios[2] + 0.5).astype(np.int64)
    n_valid = np.floor(counts * ratios[1] + 0.5).astype(np.int64)
    n_train = np.maximum(counts - n_test - n_valid, 1)
    n_valid = np.minimum(n_valid, counts - n_train)
    n_test = counts - n_train - n_valid
    part = np.where(
        position < np.repeat(n_train, counts),
        0,
        np.where(position < np.repeat(n_train + n_valid, counts), 1, 2),
    )
    rows = [np.sort(order[part == p]) for p in range(3)]
    train = data.take(rows[0]).with_name(f"{data.name}/train")
    valid = _keep_seen(train, data.take(rows[1])).with_name(f"{data.name}/valid")
    test = _keep_seen(train, data.take(rows[2])).with_name(f"{data.name}/test")
    return Split(train, _without_test_pairs(valid, test), test)


def implicit_protocol(
    data: Interactions,
    threshold: float | None = 3.0,
    k: int = 5,
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 1024,
    by: str = "random",
) -> Split:
    """Implicit feedback judged by top-K ranking: the positive rows (rating > ``threshold``, or every
    row when None), a ``k``-core of them, and a seeded per-user split (``by="time"`` where the table
    has timestamps). Every row of every part is a positive; models rank all items."""
    return per_user_split(k_core(positive_interactions(data, threshold), k), ratios, seed, by)
