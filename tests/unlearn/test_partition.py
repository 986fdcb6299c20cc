import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recunlearn.errors import ConfigError
from recunlearn.unlearn.partition import (
    balanced_semantic_partition,
    capped_greedy_assignment,
    pairwise_distance,
    random_partition,
    user_partition,
)


def sequential_walk(distance, capacity, weights=None):
    """The textbook walk, one pair at a time: the reference the vectorised version must equal."""
    n, k = distance.shape
    weights = np.ones(n) if weights is None else weights
    assignment = np.full(n, -1)
    load = np.zeros(k)
    for flat in np.argsort(distance.ravel(), kind="stable"):
        i, s = divmod(int(flat), k)
        if assignment[i] < 0 and load[s] < capacity:
            assignment[i] = s
            load[s] += weights[i]
    return assignment


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 60),
    k=st.integers(1, 6),
    seed=st.integers(0, 10_000),
    weighted=st.booleans(),
    slack=st.sampled_from([1.0, 1.2, 2.0]),
    ties=st.booleans(),
)
def test_vectorised_walk_equals_sequential_walk(n, k, seed, weighted, slack, ties):
    rng = np.random.default_rng(seed)
    distance = rng.random((n, k))
    if ties:  # coarse values make many equal distances; order must still match
        distance = np.round(distance * 3) / 3
    weights = rng.integers(1, 5, n).astype(float) if weighted else None
    total = n if weights is None else weights.sum()
    capacity = math.ceil(total / k) if slack == 1.0 and not weighted else slack * total / k
    np.testing.assert_array_equal(
        capped_greedy_assignment(distance, capacity, weights),
        sequential_walk(distance, capacity, weights),
    )


def test_balanced_semantic_partition_is_balanced_deterministic_and_follows_clusters():
    rng = np.random.default_rng(0)
    # three well separated directions, unequal cluster sizes: 50 / 30 / 20 samples
    directions = np.eye(8)[:3] * 10
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    x = directions[labels] + rng.normal(scale=0.3, size=(100, 8))
    result = balanced_semantic_partition(x, 3, seed=7)
    assert result.assignment.dtype == np.int64
    assert result.sizes.sum() == 100 and result.sizes.max() <= math.ceil(100 / 3)
    assert (
        result.balance == pytest.approx(result.sizes.max() / result.sizes.min())
        and result.balance < 1.1
    )
    assert result.centres.shape == (3, 8)
    again = balanced_semantic_partition(x, 3, seed=7)
    np.testing.assert_array_equal(result.assignment, again.assignment)
    # the 20- and 30-sample clusters fit in their shards whole: each maps to a single shard
    for small in (1, 2):
        assert len(np.unique(result.assignment[labels == small])) == 1
    summary = result.summary()
    assert summary["n_shards"] == 3 and sum(summary["sizes"]) == 100


def test_balanced_semantic_partition_rejects_bad_input():
    with pytest.raises(ConfigError, match="2-d"):
        balanced_semantic_partition(np.zeros(5), 2)
    with pytest.raises(ConfigError, match="non-empty shards"):
        balanced_semantic_partition(np.zeros((3, 2)), 4)
    with pytest.raises(ConfigError, match="unknown metric"):
        pairwise_distance(np.zeros((3, 2)), np.zeros((1, 2)), "manhattan")


def test_pairwise_distances_agree_with_definitions():
    rng = np.random.default_rng(1)
    a, c = rng.normal(size=(5, 3)), rng.normal(size=(2, 3))
    cos = 1 - (a @ c.T) / np.linalg.norm(a, axis=1)[:, None] / np.linalg.norm(c, axis=1)[None]
    np.testing.assert_allclose(pairwise_distance(a, c, "cosine"), cos, atol=1e-12)
    euc = np.linalg.norm(a[:, None] - c[None], axis=2)
    np.testing.assert_allclose(pairwise_distance(a, c, "euclidean"), euc, atol=1e-9)
    np.testing.assert_allclose(pairwise_distance(a, c, "sqeuclidean"), euc**2, atol=1e-9)


def test_random_partition_sizes_differ_by_at_most_one():
    result = random_partition(103, 10, seed=3)
    assert result.sizes.max() - result.sizes.min() <= 1
    assert result.centres is None
    np.testing.assert_array_equal(result.assignment, random_partition(103, 10, seed=3).assignment)
    assert not np.array_equal(result.assignment, random_partition(103, 10, seed=4).assignment)


def test_user_partition_puts_each_user_in_one_shard_balanced_and_seeded():
    rng = np.random.default_rng(0)
    row_users = rng.integers(0, 60, size=900) ** 2 % 61  # uneven row counts per user
    result = user_partition(row_users, 5, seed=3)
    for user in np.unique(row_users):
        assert len(np.unique(result.assignment[row_users == user])) == 1, user
    heaviest = np.bincount(row_users).max()
    assert result.sizes.sum() == 900 and result.sizes.max() - result.sizes.min() <= heaviest
    np.testing.assert_array_equal(result.assignment, user_partition(row_users, 5, 3).assignment)
    assert not np.array_equal(result.assignment, user_partition(row_users, 5, 4).assignment)
    with pytest.raises(ConfigError):
        user_partition(np.array([0, 0, 1]), 3)  # two users cannot fill three shards


@pytest.mark.parametrize("n, k", [(115, 7), (100, 3), (1000, 13)])
def test_a_capacity_of_exactly_n_over_k_is_not_refused_for_float_rounding(n, k):
    """slack 1.0 gives capacity n / K, whose product with K can round one ulp below n."""
    from recunlearn.unlearn.partition import receraser_partition

    rng = np.random.default_rng(0)
    assignment = capped_greedy_assignment(rng.random((n, k)), 1.0 * n / k)
    assert (assignment >= 0).all() and np.bincount(assignment, minlength=k).max() <= math.ceil(
        n / k
    )
    result = receraser_partition(
        rng.random((n, 4)),
        rng.random((n, 4)),
        np.arange(n),
        np.arange(n),
        k,
        kind="interaction",
        slack=1.0,
    )
    assert len(result.assignment) == n and np.bincount(
        result.assignment, minlength=k
    ).max() <= math.ceil(n / k)
    with pytest.raises(ConfigError, match="cannot hold"):
        capped_greedy_assignment(rng.random((n, k)), 0.99 * n / k)
