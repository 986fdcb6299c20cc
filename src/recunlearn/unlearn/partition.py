"""Partitions of training data into K disjoint shards, shared by every shard-based method.

Every partitioner is a pure function of its inputs and a seed, so the same call gives the same
assignment. The capacity-capped greedy walk (sort every (unit, centre) pair by distance, walk the list,
give a unit to a centre while that shard has room) is the common core of APA, RecEraser and
GraphEraser; :func:`capped_greedy_assignment` runs it in a few vectorised rounds instead of a Python
loop over n x K pairs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from sklearn.cluster import KMeans

from recunlearn.errors import ConfigError

METRICS = ("cosine", "euclidean", "sqeuclidean")


@dataclass(frozen=True)
class PartitionResult:
    """Shard index of every unit (row, user, item or sample) and the centres that produced it."""

    assignment: np.ndarray
    """int64 shard index per unit."""
    n_shards: int
    centres: np.ndarray | None = None
    """K x d centres in the embedding space (None for partitions without centres, e.g. random)."""
    weights: np.ndarray | None = field(default=None, repr=False)
    """What each unit counts towards its shard's size (e.g. a user's number of interactions); None = 1."""

    @property
    def sizes(self) -> np.ndarray:
        """Size of each shard, in the units the capacity counts (weights if given)."""
        return np.bincount(self.assignment, weights=self.weights, minlength=self.n_shards).astype(
            np.int64
        )

    @property
    def balance(self) -> float:
        """Largest shard over smallest (1.0 = perfectly balanced; inf when a shard is empty)."""
        sizes = self.sizes
        return float(sizes.max() / sizes.min()) if sizes.min() > 0 else math.inf

    def summary(self) -> dict[str, object]:
        """JSON-able sizes and balance for reports."""
        balance = self.balance
        return {
            "n_shards": self.n_shards,
            "sizes": self.sizes.tolist(),
            "balance": round(balance, 4) if math.isfinite(balance) else None,
        }


def _check_shards(n_units: int, n_shards: int) -> None:
    if n_shards < 1:
        raise ConfigError(f"n_shards must be at least 1, got {n_shards}")
    if n_units < n_shards:
        raise ConfigError(f"cannot split {n_units} units into {n_shards} non-empty shards")


def pairwise_distance(points: np.ndarray, centres: np.ndarray, metric: str) -> np.ndarray:
    """n x K distances of every (point, centre) pair."""
    points = np.asarray(points, np.float64)
    centres = np.asarray(centres, np.float64)
    if metric == "cosine":
        p = points / np.maximum(np.linalg.norm(points, axis=1, keepdims=True), 1e-12)
        c = centres / np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-12)
        return 1.0 - p @ c.T
    if metric in ("euclidean", "sqeuclidean"):
        squared = (
            (points**2).sum(1)[:, None] - 2.0 * points @ centres.T + (centres**2).sum(1)[None, :]
        )
        squared = np.maximum(squared, 0.0)
        return squared if metric == "sqeuclidean" else np.sqrt(squared)
    raise ConfigError(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")


def capped_greedy_assignment(
    distance: np.ndarray, capacity: float, weights: np.ndarray | None = None
) -> np.ndarray:
    """Walk all (unit, shard) pairs by ascending distance; give unit i to shard k if i is unassigned and
    shard k holds less than ``capacity`` (in ``weights``, default 1 per unit).

    Exactly the sequential walk, vectorised: until the first shard fills, the walk accepts precisely
    each unassigned unit's first pair into an open shard, so one round accepts those up to the pair
    that fills a shard, closes it, and repeats (at most K rounds). Ties break by unit, then shard index.
    """
    n, n_shards = distance.shape
    weights = np.ones(n) if weights is None else np.asarray(weights, np.float64)
    total = weights.sum()
    if n_shards * capacity < total:
        if n_shards * capacity < total * (1 - 1e-9):
            raise ConfigError(
                f"capacity {capacity} x {n_shards} shards cannot hold {total:g} units"
            )
        capacity = (
            total / n_shards * (1 + 1e-12)
        )  # short of the total by float rounding (slack 1 x n / K): what was meant
    order = np.argsort(distance.ravel(), kind="stable")
    pair_unit, pair_shard = np.divmod(order, n_shards)
    assignment = np.full(n, -1, np.int64)
    load = np.zeros(n_shards)
    while (assignment < 0).any():
        open_shard = load < capacity
        live = (assignment[pair_unit] < 0) & open_shard[pair_shard]
        unit, shard = pair_unit[live], pair_shard[live]
        _, first = np.unique(unit, return_index=True)
        first.sort()
        unit, shard = unit[first], shard[first]
        # running load of each shard along the walk; the walk is exact up to the first pair that fills one
        one_hot = np.zeros((len(unit), n_shards))
        one_hot[np.arange(len(unit)), shard] = weights[unit]
        running = np.cumsum(one_hot, axis=0)[np.arange(len(unit)), shard] + load[shard]
        fills = np.flatnonzero(running >= capacity)
        stop = fills[0] + 1 if len(fills) else len(unit)
        assignment[unit[:stop]] = shard[:stop]
        np.add.at(load, shard[:stop], weights[unit[:stop]])
    return assignment


def kmeans_centres(embeddings: np.ndarray, n_shards: int, seed: int) -> np.ndarray:
    """K-means centres (scikit-learn, k-means++ with a fixed seed, so deterministic)."""
    model = KMeans(n_clusters=n_shards, random_state=seed, n_init=1)
    model.fit(np.asarray(embeddings, np.float64))
    return model.cluster_centers_


def balanced_semantic_partition(
    embeddings: np.ndarray, n_shards: int, seed: int = 0, metric: str = "cosine"
) -> PartitionResult:
    """APA's balanced semantic-aware partition: k-means gives K centres, then the capped greedy walk
    over all (sample, centre) pairs by ascending distance fills each shard up to t = ceil(n / K)."""
    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 2:
        raise ConfigError(
            f"embeddings must be a 2-d array (samples x features), got shape {embeddings.shape}"
        )
    n = len(embeddings)
    _check_shards(n, n_shards)
    centres = kmeans_centres(embeddings, n_shards, seed)
    assignment = capped_greedy_assignment(
        pairwise_distance(embeddings, centres, metric), math.ceil(n / n_shards)
    )
    return PartitionResult(assignment, n_shards, centres)


def random_partition(n_rows: int, n_shards: int, seed: int = 0) -> PartitionResult:
    """SISA: a random permutation dealt round-robin, so shard sizes differ by at most one."""
    _check_shards(n_rows, n_shards)
    order = np.random.default_rng(seed).permutation(n_rows)
    assignment = np.empty(n_rows, np.int64)
    assignment[order] = np.arange(n_rows) % n_shards
    return PartitionResult(assignment, n_shards)


def user_partition(row_users: np.ndarray, n_shards: int, seed: int = 0) -> PartitionResult:
    """SISA by user: every user's rows in one shard, so forgetting a user touches one shard. Users in
    a seeded random order, the heaviest first, each to the shard with the fewest rows so far; shard
    sizes (in rows) differ by at most one user's rows."""
    present, row_units = np.unique(np.asarray(row_users), return_inverse=True)
    _check_shards(len(present), n_shards)
    weights = np.bincount(row_units)
    shuffled = np.random.default_rng(seed).permutation(len(present))
    order = shuffled[np.argsort(-weights[shuffled], kind="stable")]
    assignment = np.empty(len(present), np.int64)
    load = np.zeros(n_shards, np.int64)
    for unit in order:
        shard = int(np.argmin(load))  # the lowest index among the lightest: deterministic
        assignment[unit] = shard
        load[shard] += weights[unit]
    return units_to_rows(PartitionResult(assignment, n_shards), row_units)


def balanced_kmeans(
    embeddings: np.ndarray,
    n_shards: int,
    capacity: float,
    seed: int = 0,
    iterations: int = 10,
    weights: np.ndarray | None = None,
    metric: str = "sqeuclidean",
) -> PartitionResult:
    """K-means whose assignment step is the capacity-capped greedy walk (RecEraser's and GraphEraser's BEKM).

    Centres start at K distinct random units (seeded); each of up to ``iterations`` rounds assigns every
    unit by the walk, then moves each centre to the mean of its units; it stops early when an
    assignment repeats.
    """
    embeddings = np.asarray(embeddings, np.float64)
    _check_shards(len(embeddings), n_shards)
    rng = np.random.default_rng(seed)
    centres = embeddings[rng.choice(len(embeddings), n_shards, replace=False)]
    assignment = None
    for _ in range(max(iterations, 1)):
        new = capped_greedy_assignment(
            pairwise_distance(embeddings, centres, metric), capacity, weights
        )
        if assignment is not None and np.array_equal(new, assignment):
            break
        assignment = new
        counts = np.bincount(assignment, minlength=n_shards)
        sums = np.zeros_like(centres)
        np.add.at(sums, assignment, embeddings)
        centres = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], centres)
    return PartitionResult(assignment, n_shards, centres, weights)


def units_to_rows(unit_result: PartitionResult, row_units: np.ndarray) -> PartitionResult:
    """Row-level partition from a partition of users / items: every row goes with its unit."""
    return PartitionResult(
        unit_result.assignment[row_units], unit_result.n_shards, unit_result.centres
    )


RECERASER_KINDS = ("user", "item", "interaction")


def receraser_partition(
    user_emb: np.ndarray,
    item_emb: np.ndarray,
    row_user: np.ndarray,
    row_item: np.ndarray,
    n_shards: int,
    kind: str = "user",
    seed: int = 0,
    iterations: int = 10,
    slack: float = 1.2,
) -> PartitionResult:
    """RecEraser's balanced partitions of interaction rows (sizes in rows, capacity ``slack`` x rows / K).

    'user': users are clustered on their embeddings, each weighted by its number of rows, and take all
    their rows along; 'item': the same for items; 'interaction': each row is a unit embedded as the
    concatenation of its user's and item's embeddings.
    """
    capacity = slack * len(row_user) / n_shards
    if kind == "interaction":
        points = np.concatenate(
            [np.asarray(user_emb)[row_user], np.asarray(item_emb)[row_item]], axis=1
        )
        return balanced_kmeans(points, n_shards, capacity, seed, iterations)
    if kind not in RECERASER_KINDS:
        raise ConfigError(
            f"unknown RecEraser partition {kind!r}; use one of {', '.join(RECERASER_KINDS)}"
        )
    table, row_units = (user_emb, row_user) if kind == "user" else (item_emb, row_item)
    present, row_units = np.unique(row_units, return_inverse=True)  # units with at least one row
    weights = np.bincount(row_units).astype(np.float64)
    result = balanced_kmeans(
        np.asarray(table)[present], n_shards, capacity, seed, iterations, weights
    )
    return units_to_rows(result, row_units)


def bekm_partition(
    node_emb: np.ndarray, row_nodes: np.ndarray, n_shards: int, seed: int = 0, iterations: int = 10
) -> PartitionResult:
    """GraphEraser's BEKM over the nodes that have rows: balanced embedding k-means with at most
    ceil(nodes / K) nodes per shard (node counts, not rows, are balanced); each row goes with its node."""
    present, row_nodes = np.unique(row_nodes, return_inverse=True)
    _check_shards(len(present), n_shards)
    result = balanced_kmeans(
        np.asarray(node_emb)[present],
        n_shards,
        math.ceil(len(present) / n_shards),
        seed,
        iterations,
        metric="euclidean",
    )
    return units_to_rows(result, row_nodes)
