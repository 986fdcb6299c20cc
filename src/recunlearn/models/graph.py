"""Graph utilities of the bipartite user-item graph: the D^-1/2 A D^-1/2 normalisation, its
conversion between scipy and torch CSR, edge removal with incremental renormalisation, and the
neighbourhoods and lookups over its stored entries that LightGCN and the influence methods share.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch


def normalized_adjacency(
    n_users: int, n_items: int, user: np.ndarray, item: np.ndarray
) -> torch.Tensor:
    """D^-1/2 A D^-1/2 of the bipartite graph as a CSR tensor of size (n_users+n_items)^2."""
    n = n_users + n_items
    pairs = (
        np.unique(np.stack([user, item + n_users]), axis=1)
        if len(user)
        else np.zeros((2, 0), np.int64)
    )
    rows = np.concatenate([pairs[0], pairs[1]])
    cols = np.concatenate([pairs[1], pairs[0]])
    inv_sqrt = _inverse_sqrt(np.bincount(rows, minlength=n).astype(np.float64))
    matrix = sp.csr_matrix(
        (inv_sqrt[rows] * inv_sqrt[cols], (rows, cols)), shape=(n, n), dtype=np.float32
    )
    matrix.sort_indices()
    return scipy_to_adjacency(matrix)


def remove_edges(
    graph: sp.csr_matrix, n_users: int, users: np.ndarray, items: np.ndarray
) -> sp.csr_matrix:
    """The normalised adjacency without the (user, item) edges given, renormalised.

    Vectorised over the stored entries (the graph's indices are sorted), and value for value what
    :func:`normalized_adjacency` gives on the remaining edges.
    """
    n = graph.shape[0]
    a, b = users.astype(np.int64), n_users + items.astype(np.int64)
    position, found = find_entries(graph, np.concatenate([a, b]), np.concatenate([b, a]))
    keep = np.ones(graph.nnz, bool)
    keep[position[found]] = False
    row = np.repeat(np.arange(n, dtype=np.int64), np.diff(graph.indptr))[keep]
    col = graph.indices[keep]
    degree = np.bincount(row, minlength=n).astype(np.float64)
    inv_sqrt = _inverse_sqrt(degree)
    indptr = np.concatenate([[0], np.cumsum(degree.astype(np.int64))])
    return sp.csr_matrix(
        ((inv_sqrt[row] * inv_sqrt[col]).astype(np.float32), col, indptr), shape=(n, n)
    )


def _inverse_sqrt(degree: np.ndarray) -> np.ndarray:
    """D^-1/2 of the node degrees, 0 for isolated nodes."""
    inv_sqrt = np.zeros(len(degree))
    inv_sqrt[degree > 0] = degree[degree > 0] ** -0.5
    return inv_sqrt


def adjacency_to_scipy(adjacency: torch.Tensor) -> sp.csr_matrix:
    """A torch CSR adjacency as a scipy CSR matrix (sharing memory on CPU)."""
    n = adjacency.shape[0]
    return sp.csr_matrix(
        (
            adjacency.values().cpu().numpy(),
            adjacency.col_indices().cpu().numpy(),
            adjacency.crow_indices().cpu().numpy(),
        ),
        shape=(n, n),
    )


def scipy_to_adjacency(matrix: sp.csr_matrix, device: torch.device | str = "cpu") -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(
            torch.from_numpy(matrix.indptr.astype(np.int64)),
            torch.from_numpy(matrix.indices.astype(np.int64)),
            torch.from_numpy(matrix.data.astype(np.float32)),
            matrix.shape,
        ).to(device)


def find_entries(
    graph: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Where each (rows[k], cols[k]) is stored in ``graph.data`` and whether it is stored at all, by
    binary search on row * n + col (``graph`` must have sorted indices)."""
    n = graph.shape[0]
    keys = np.repeat(np.arange(n, dtype=np.int64), np.diff(graph.indptr)) * n + graph.indices
    rows = np.asarray(rows, np.int64)
    wanted = rows * n + np.asarray(cols, np.int64)
    if (
        n <= 1 << 16 and len(rows) > 1024
    ):  # searched row by row (a linear radix sort): far fewer cache misses
        by_row = group_order(rows, n)
        position = np.empty(len(wanted), np.int64)
        position[by_row] = np.searchsorted(keys, wanted[by_row])
    else:
        position = np.searchsorted(keys, wanted)
    found = position < len(keys)
    found[found] &= keys[position[found]] == wanted[found]
    return position, found


def expand(
    graph: sp.csr_matrix | None, nodes: np.ndarray, hops: int, size: int | None = None
) -> np.ndarray:
    """``nodes`` and every node within ``hops`` edges of them (sorted, unique); the graph's stored
    values must be positive (a normalised adjacency's are).

    Marks nodes in tables over the graph's (or ``size``) nodes rather than hashing them: a hop is one
    sparse matrix-vector product with the frontier's indicator, linear in the edges.
    """
    size = graph.shape[0] if graph is not None else size
    if size is None:
        return np.unique(nodes)
    marked = np.zeros(size, bool)
    marked[nodes] = True
    frontier = marked.astype(np.float32)
    for _ in range(hops if graph is not None else 0):
        fresh = (graph.T @ frontier > 0) & ~marked  # an edge (frontier node, v) reaches v
        if not fresh.any():
            break
        marked |= fresh
        frontier = fresh.astype(np.float32)
    return np.flatnonzero(marked)


def group_order(groups: np.ndarray, n_groups: int) -> np.ndarray:
    """A stable argsort of non-negative group ids below ``n_groups``: numpy's linear radix sort where
    they fit 16 bits. What orders rows into a CSR pattern (the columns within a row stay in the
    rows' order, which no sparse product here needs sorted)."""
    return np.argsort(groups.astype(np.uint16) if n_groups <= 1 << 16 else groups, kind="stable")


def grouped_order(groups: torch.Tensor, n_groups: int) -> torch.Tensor:
    """:func:`group_order` of a tensor (torch's sort off the CPU)."""
    if groups.device.type == "cpu":
        return torch.from_numpy(group_order(groups.numpy(), n_groups))
    return torch.argsort(groups, stable=True)
