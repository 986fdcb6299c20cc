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


def random_split(data: Interactions, ratios: Sequence[float] = (0.6, 0.2, 0.2),
                 seed: int = 1024) -> Split:
    """Shuffle rows and cut by ``ratios`` (IFRU's 60/20/20); valid/test keep users and items seen in train."""
    if len(ratios) != 3 or min(ratios) < 0 or not np.isclose(sum(ratios), 1.0):
        raise DataError(f"ratios must be three non-negative numbers summing to 1, got {list(ratios)}")
    order = np.random.default_rng(seed).permutation(len(data))
    n_train = int(round(ratios[0] * len(data)))
    n_valid = int(round(ratios[1] * len(data)))
    train = data.take(order[:n_train]).with_name(f"{data.name}/train")
    valid = _keep_seen(train, data.take(order[n_train:n_train + n_valid])).with_name(f"{data.name}/valid")
    test = _keep_seen(train, data.take(order[n_train + n_valid:])).with_name(f"{data.name}/test")
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


def ifru_protocol(data: Interactions, threshold: float = 3.0, k: int = 5, seed: int = 1024) -> Split:
    """The IFRU paper's preparation: binarise, k-core, random 60/20/20 keeping seen users/items."""
    return random_split(k_core(binarize(data, threshold), k), (0.6, 0.2, 0.2), seed)
