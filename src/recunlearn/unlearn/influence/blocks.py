"""The per-row Hessian blocks of a :class:`~recunlearn.unlearn.influence.objective.RestrictedObjective`:
the Gauss-Newton preconditioner blocks, the exact diagonal blocks through LightGCN's propagation
(:func:`hessian_blocks`) with the bound on each row's coupling to the others, and their low-rank
form for the pairwise objective. A little over 500 lines: :func:`hessian_blocks` and the helpers only
it uses (triangle maps, segment sums, edge lookups) read best together.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from recunlearn.models.graph import expand, find_entries, grouped_order, scipy_to_adjacency
from recunlearn.unlearn.influence.objective import Operator, RestrictedObjective, SolverError
from recunlearn.unlearn.influence.sampling import NeighbourSample


def _select_rows(matrix: sp.csr_matrix, rows: np.ndarray) -> sp.csr_matrix:
    """``matrix[rows]``, without a copy when ``rows`` are all of them in order."""
    if len(rows) == matrix.shape[0] and (rows == np.arange(len(rows))).all():
        return matrix
    return matrix[rows]


def _select_columns(matrix: sp.csr_matrix, columns: np.ndarray) -> sp.csr_matrix:
    """``matrix[:, columns]`` for distinct ``columns``, by one lookup over the stored entries (the
    entries keep their order within a row, sorted or not)."""
    lookup = np.full(matrix.shape[1], -1, np.int64)
    lookup[columns] = np.arange(len(columns))
    moved = lookup[matrix.indices]
    keep = moved >= 0
    indptr = np.concatenate([[0], np.cumsum(keep)])[matrix.indptr]
    return sp.csr_matrix(
        (matrix.data[keep], moved[keep], indptr), shape=(matrix.shape[0], len(columns))
    )


def block_preconditioner(
    objective: RestrictedObjective, chunk: int = 4096, diagonal: bool = False
) -> torch.Tensor:
    """Per kept row, the (dim x dim) Gauss-Newton block of the Hessian of ``objective`` (or, with
    ``diagonal``, only its diagonal: shape (rows, dim), far cheaper to form).

    For MF these are exactly the diagonal blocks of the Hessian (sum of sigma'(x) q q^T plus
    ``l2`` per row; for a BPR triple, sigma'(z) times (q_i - q_j)(q_i - q_j)' at the user and
    p_u p_u' at either item, z = x_ui - x_uj); for LightGCN the own-embedding path of propagation
    only (weight 1/(L+1)), which is what a preconditioner needs: cheap, positive semi-definite,
    close to the diagonal.
    """
    with torch.no_grad():
        base = objective.embeddings()
        reps = objective.propagate(base)
        u_rep, i_rep = reps.index_select(0, objective.row_u), reps.index_select(0, objective.row_i)
        logits = (u_rep * i_rep).sum(-1)
        if objective.pairwise:
            j_rep = reps.index_select(0, objective.row_j)
            logits = logits - (u_rep * j_rep).sum(-1)
            sides = (
                (objective.row_u, i_rep - j_rep),
                (objective.row_i, u_rep),
                (objective.row_j, u_rep),
            )
        else:
            sides = ((objective.row_u, i_rep), (objective.row_i, u_rep))
        curvature = (
            objective.weights
            * torch.sigmoid(logits)
            * torch.sigmoid(-logits)
            / (objective.n_layers + 1) ** 2
        )
        size, dim = objective.theta0.shape
        block_of = torch.full((objective.size,), -1, dtype=torch.long, device=base.device)
        block_of[objective.kept_position] = objective.kept_theta
        blocks = torch.zeros((size, dim) if diagonal else (size, dim, dim), device=base.device)
        counts = torch.zeros(size, device=base.device)
        for end, other in sides:
            side = block_of[end]
            rows = torch.nonzero(side >= 0).squeeze(1)
            if diagonal:
                blocks.index_add_(0, side[rows], curvature[rows, None] * other[rows].square())
            else:
                for start in range(0, len(rows), chunk):
                    r = rows[start : start + chunk]
                    o = other[r]
                    blocks.index_add_(
                        0, side[r], curvature[r, None, None] * o[:, :, None] * o[:, None, :]
                    )
            counts.index_add_(0, side[rows], objective.weights[rows])
        if diagonal:
            blocks += (objective.l2 * counts)[:, None]
        else:
            blocks += (objective.l2 * counts)[:, None, None] * torch.eye(dim, device=base.device)
    return blocks


def block_solver(blocks: torch.Tensor, damping: float) -> Operator:
    """v -> (blocks + damping I)^-1 v row-block by row-block (Cholesky, batched; elementwise for diagonals)."""
    if blocks.dim() == 2:
        inverse = 1.0 / (blocks.clamp_min(0) + damping)
        return lambda v: v * inverse
    eye = torch.eye(blocks.shape[-1], device=blocks.device, dtype=blocks.dtype)
    factor, info = torch.linalg.cholesky_ex(blocks + damping * eye)
    if (info > 0).any():  # a block is not positive definite: fall back to its diagonal
        bad = info > 0
        diagonal = torch.diagonal(blocks[bad], dim1=-2, dim2=-1).clamp_min(0) + damping
        factor[bad] = torch.diag_embed(diagonal.sqrt())
    return lambda v: cholesky_solve(v.unsqueeze(-1), factor).squeeze(-1)


def segment_groups(
    segments: torch.Tensor,
    n_segments: int,
    dim: int,
    budget: int = 1 << 22,
    spread: float = 1.25,
    pad: int | None = None,
):
    """Segments (rows sharing a non-negative segment id) in groups of similar size (within ``spread``,
    at most ``budget`` padded elements of width ``dim``): yields (segment ids, (group, longest) row
    index, mask of the real rows), for padded batched matmuls instead of per-row outer products.
    Padding slots of the index hold ``pad`` (a zero row the caller appends saves masking; None: a
    real row, which the caller masks)."""
    shifted = segments.clamp_min(-1) + 1
    counts = torch.bincount(shifted, minlength=n_segments + 1)[1:]
    order = grouped_order(shifted, n_segments + 1)
    starts = (
        torch.cumsum(counts, 0) - counts + (len(segments) - int(counts.sum()))
    )  # negatives sort first
    by_size = torch.argsort(counts)
    by_size = by_size[counts[by_size] > 0]
    sizes = counts[by_size].tolist()
    first, n = 0, len(sizes)
    while first < n:
        # sizes ascend: the group takes the segments within ``spread`` of its first, as many as the budget allows
        last = bisect.bisect_right(sizes, spread * sizes[first] + 1, first + 1)
        last = max(first + 1, min(last, first + budget // (sizes[last - 1] * dim)))
        group, longest = by_size[first:last], sizes[last - 1]
        offsets = torch.arange(longest, device=segments.device)
        mask = offsets[None, :] < counts[group][:, None]
        index = order[torch.where(mask, starts[group][:, None] + offsets[None, :], 0)]
        yield group, (index if pad is None else index.masked_fill_(~mask, pad)), mask
        first = last


def _gather(rows: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``rows[index]`` for a 2-D index, by a 1-D ``index_select`` (on CPU a row copy, not per-element indexing)."""
    return rows.index_select(0, index.reshape(-1)).view(*index.shape, -1)


def segment_outer_sum(
    segments: torch.Tensor,
    left: torch.Tensor,
    right: torch.Tensor,
    n_segments: int,
    weights: torch.Tensor | None = None,
    budget: int = 1 << 22,
    spread: float = 1.25,
    in_group_order: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """sum_k w_k left_k right_k' for each segment: shape (n_segments, d, d); one batched matmul per group
    (:func:`segment_groups`), so no (rows, d, d) outer product is ever formed.
    Rows with a negative segment are ignored. With ``left is right`` and no negative weight (a Gram
    matrix, as every curvature sum is) the rows are scaled by sqrt(w) once and gathered once per group.
    ``in_group_order``: return (sums, segments) instead, the sums of the segments that have rows in the
    order the groups compute them, each group's matmul writing its slice in place, where a caller
    that can reorder its own indices (a sparse matrix's columns) saves scattering them.
    """
    dim = left.shape[1]
    groups = list(segment_groups(segments, n_segments, dim, budget, spread, pad=len(segments)))
    if in_group_order:
        order = torch.cat([group for group, _, _ in groups]) if groups else segments.new_zeros(0)
        out = torch.empty((len(order), dim, dim), dtype=left.dtype, device=left.device)
    else:
        out = torch.empty((n_segments, dim, dim), dtype=left.dtype, device=left.device)
        unwritten = torch.nonzero(
            torch.bincount(segments[segments >= 0], minlength=n_segments) == 0
        ).squeeze(1)
        if len(unwritten):  # segments without rows; the loop below writes every other one
            out[unwritten] = 0

    gram = left is right and (weights is None or bool((weights >= 0).all()))

    # rows scaled once (by sqrt(w) on both sides of a Gram matrix), with a zero row that padding points at
    def padded(rows: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
        buffer = rows.new_empty((len(rows) + 1, dim))
        buffer[-1] = 0
        if scale is None:
            buffer[:-1] = rows
        else:
            torch.mul(rows, scale[:, None], out=buffer[:-1])
        return buffer

    if gram:
        left = right = padded(right, None if weights is None else weights.sqrt())
    else:
        left, right = padded(left, weights), padded(right, None)
    start = 0
    for group, index, _ in groups:
        gathered_right = _gather(right, index)
        gathered_left = gathered_right if gram else _gather(left, index)
        if in_group_order:
            torch.bmm(
                gathered_left.transpose(1, 2), gathered_right, out=out[start : start + len(group)]
            )
            start += len(group)
        else:
            out.index_copy_(0, group, torch.bmm(gathered_left.transpose(1, 2), gathered_right))
    return (out, order) if in_group_order else out


@dataclass
class LowRankBlocks:
    """Diagonal Hessian blocks of the form sum_k w_k z_k z_k' + diagonal_u I (MF's: z = the other end's
    row, w = sigma'), kept as their rows: a block with fewer rows than dimensions is solved through
    the Woodbury identity on its (rows x rows) Gram matrix instead of a (dim x dim) Cholesky."""

    segments: torch.Tensor
    """The block (kept row) each z belongs to; -1: none."""
    rows: torch.Tensor
    weights: torch.Tensor
    diagonal: torch.Tensor
    """Per block, the multiple of I added (l2 times the weighted row count)."""

    @property
    def size(self) -> int:
        return len(self.diagonal)

    def diagonal_mean(self) -> float:
        """Mean of the blocks' diagonal entries (what the damping is scaled by)."""
        squares = torch.where(
            self.segments >= 0, self.weights * self.rows.square().sum(-1), 0.0
        ).sum()
        return float(squares / (self.size * self.rows.shape[1]) + self.diagonal.mean())

    def dense(self) -> torch.Tensor:
        blocks = segment_outer_sum(
            self.segments, self.rows, self.rows, self.size, weights=self.weights
        )
        return blocks + self.diagonal[:, None, None] * torch.eye(
            self.rows.shape[1], device=self.rows.device
        )

    def solve(self, b: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        """x_u = (block_u + shift_u I)^-1 b_u for every block (shift > 0 makes each positive definite)."""
        dim = self.rows.shape[1]
        total = self.diagonal + shift  # > 0
        x = b / total[:, None]  # blocks without rows
        for group, index, mask in segment_groups(self.segments, self.size, dim):
            z = _gather(self.rows, index).mul_(
                (mask * _gather(self.weights[:, None], index).squeeze(-1))
                .clamp_min(0)
                .sqrt()[:, :, None]
            )  # (g, m, d)
            s = total[group]
            if z.shape[1] < dim:  # Woodbury: x = (b - Z' (s I + Z Z')^-1 Z b) / s
                gram = torch.bmm(z, z.transpose(1, 2))
                gram.diagonal(dim1=1, dim2=2).add_(s[:, None])
                zb = torch.bmm(z, b[group].unsqueeze(-1))
                y = cholesky_solve(zb, _cholesky(gram))
                x[group] = (b[group] - torch.bmm(z.transpose(1, 2), y).squeeze(-1)) / s[:, None]
            else:
                block = torch.bmm(z.transpose(1, 2), z)
                block.diagonal(dim1=1, dim2=2).add_(s[:, None])
                x[group] = cholesky_solve(b[group].unsqueeze(-1), _cholesky(block)).squeeze(-1)
        return x


def cholesky_solve(b: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``torch.cholesky_solve`` by two batched triangular solves, which MKL runs faster on many small blocks."""
    return torch.linalg.solve_triangular(
        factor.mT, torch.linalg.solve_triangular(factor, b, upper=False), upper=True
    )


def _cholesky(matrices: torch.Tensor) -> torch.Tensor:
    factor, info = torch.linalg.cholesky_ex(matrices)
    if (info > 0).any():  # positive definite in exact arithmetic; rounding can still break it
        raise SolverError(
            "a per-row Newton block is not positive definite in float precision; increase damping"
        )
    return factor


def _propagation_rows(objective: RestrictedObjective, rows: np.ndarray) -> sp.csr_matrix:
    """Rows ``rows`` (closure positions) of LightGCN's propagation P = mean_k A^k over the closure."""
    graph = objective.graph.astype(np.float64)
    power = sp.csr_matrix(
        (np.ones(len(rows)), (np.arange(len(rows)), rows)), shape=(len(rows), graph.shape[0])
    )
    total = power.copy()
    for _ in range(objective.n_layers):
        power = power @ graph
        total = total + power
    return (total / (objective.n_layers + 1)).tocsr()


def _triangle_maps(dim: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """For (dim x dim) matrices flattened row-major: the positions of the upper triangle (i <= j), and
    for every position the index of its entry in that triangle (a symmetric matrix from its triangle).
    A sparse product over the triangle moves half the bytes of one over the full rows."""
    rows, cols = torch.triu_indices(dim, dim, device=device)
    symmetric = torch.empty((dim, dim), dtype=torch.long, device=device)
    symmetric[rows, cols] = symmetric[cols, rows] = torch.arange(len(rows), device=device)
    return rows * dim + cols, symmetric.reshape(-1)


def _reached_by_both_ends(
    objective: RestrictedObjective, reach: sp.csr_matrix | None
) -> tuple[np.ndarray, ...]:
    """Every (kept node u, training row r = (v, j)) with P_vu P_ju != 0: u's slot in ``reach``'s rows,
    the row, and P_vu P_ju.

    With one layer on the bipartite graph, P = (I + A) / 2 and no third node neighbours both a user
    and an item, so u is one of the row's own ends and P_vu P_ju = A_vj / 4: found by looking the
    row's edge up, in time linear in the rows. Deeper propagation intersects ``reach``'s columns
    (cost: the summed reach of every row's ends, large around popular nodes).
    """
    row_u, row_i = objective.row_u.cpu().numpy(), objective.row_i.cpu().numpy()
    if objective.n_layers == 1:
        graph = objective.graph
        if not graph.has_sorted_indices:
            graph = graph.sorted_indices()
        position, found = find_entries(graph, row_u, row_i)
        edge = np.zeros(len(row_u))
        edge[found] = graph.data[position[found]]
        slot_of = np.full(objective.size, -1, np.int64)
        slot_of[objective.kept_position.cpu().numpy()] = np.arange(len(objective.kept_position))
        slots, rows, products = [], [], []
        for end in (row_u, row_i):
            hit = np.flatnonzero((slot_of[end] >= 0) & (edge != 0))
            slots.append(slot_of[end[hit]])
            rows.append(hit)
            products.append(edge[hit] / 4)
        return np.concatenate(slots), np.concatenate(rows), np.concatenate(products)
    by_column = reach.tocsc()
    both = by_column[:, row_u].multiply(by_column[:, row_i]).tocoo()  # (kept x rows): P_vu P_ju
    return both.row, both.col, both.data


def hessian_blocks(
    objective: RestrictedObjective,
    low_rank: bool = False,
    neighbours: NeighbourSample | None = None,
) -> tuple[torch.Tensor | LowRankBlocks, torch.Tensor]:
    """The exact (dim x dim) diagonal blocks of the Hessian of ``objective``, one per kept row, and
    per row an upper bound of its coupling to all other rows, sum_{w != u} ||H_uw||_2.

    Row r = (v, j) has logit x_r = <r_v, r_j>, r = P e (MF: P = I), so for a kept row u
    d x_r / d e_u = P_vu r_j + P_ju r_v and d^2 x_r / d e_u^2 = 2 P_vu P_ju I, giving
    H_uu = sum_r sigma'_r (P_vu r_j + P_ju r_v)(...)' + 2 (sigma_r - y_r) P_vu P_ju I + l2 n_u I.
    Expanded: (P o P)' M + X + X' + s I, where M_n = sum over rows with endpoint n of
    sigma' r_other r_other' (the MF block), X_u = sum_r P_vu P_ju sigma' r_j r_v' over the rows
    whose two ends both reach u (for one layer: u's own positive edges), and s the second-order sum.
    Everything is built by batched matmuls over rows (:func:`segment_outer_sum`), never per row.
    For MF the cross terms vanish and the blocks are sum_r sigma' q q' + l2 n_u I (positive
    semi-definite); for LightGCN the second-order term can make a block indefinite.

    The coupling bound (block Gershgorin): with |d x_r / d e_w| <= P_vw |r_j| + P_jw |r_v| and
    s_n = sum_w P_nw, sum_w ||H_uw|| <= sum_r sigma' b_ru T_r + |sigma - y| (P_vu s_j + P_ju s_v),
    b_ru = P_vu |r_j| + P_ju |r_v|, T_r = s_v |r_j| + s_j |r_v|, less the row's own term; for MF
    that is sum over u's rows of sigma' |r_u| |r_i| + |sigma - y|. Linear in the rows.

    ``low_rank``: for MF, return the blocks as :class:`LowRankBlocks` (their rows), not formed.
    ``neighbours`` (one-layer LightGCN): the sums over P's rows run over a sample of each kept
    node's neighbours (:func:`sample_neighbours`, unbiased), so only the drawn nodes' M are formed.
    """
    with torch.no_grad():
        base = objective.embeddings()
        reps = objective.propagate(base)
        r_u, r_i = (
            reps.index_select(0, objective.row_u),
            reps.index_select(0, objective.row_i),
        )  # index_select: row copies, cheaper than reps[...] on CPU
        probability = torch.sigmoid((r_u * r_i).sum(-1))
        curvature = objective.weights * probability * (1 - probability)
        residual = objective.weights * (probability - objective.labels)
        size, dim = objective.theta0.shape
        device = base.device
        kept_of = torch.full((objective.size,), -1, dtype=torch.long, device=device)
        kept_of[objective.kept_position] = objective.kept_theta
        counts = torch.zeros(objective.size, device=device)
        counts.index_add_(0, objective.row_u, objective.weights).index_add_(
            0, objective.row_i, objective.weights
        )
        l2 = torch.zeros(size, device=device)
        l2[objective.kept_theta] = objective.l2 * counts[objective.kept_position]
        ends = torch.cat([objective.row_u, objective.row_i])
        both_curvature = torch.cat([curvature, curvature])
        norm_u, norm_i = r_u.norm(dim=-1), r_i.norm(dim=-1)
        magnitude = residual.abs()
        coupling = torch.zeros(size, device=device)
        if objective.adjacency is None:  # MF: P = I, only a row's own ends reach it
            segment = kept_of[ends]
            at_kept = segment >= 0  # gather only the endpoints whose block is wanted
            other = reps.index_select(0, torch.cat([objective.row_i, objective.row_u])[at_kept])
            per_row = curvature * norm_u * norm_i + magnitude
            total = torch.zeros(objective.size, device=device).index_add_(
                0, ends, torch.cat([per_row, per_row])
            )
            coupling[objective.kept_theta] = total[objective.kept_position]
            if low_rank:
                return LowRankBlocks(segment[at_kept], other, both_curvature[at_kept], l2), coupling
            blocks = segment_outer_sum(
                segment[at_kept], other, other, size, weights=both_curvature[at_kept]
            )
        else:
            others = torch.cat([r_i, r_u])
            if neighbours is None:
                reach = _propagation_rows(
                    objective, objective.kept_position.cpu().numpy()
                )  # (kept x closure)
                needed = np.unique(reach.indices)  # the nodes whose M reaches a kept row
                near = reach[:, needed]
                near_squared = near.multiply(near).tocsr()
            else:
                if objective.n_layers != 1:
                    raise ValueError("sampled neighbours stand for one-layer propagation only")
                reach = None
                kept_rows = (
                    objective.kept_theta.cpu().numpy()
                )  # kept nodes with rows (the others have no block)
                linear, near_squared = (
                    _select_rows(neighbours.linear, kept_rows),
                    _select_rows(neighbours.squared, kept_rows),
                )
                drawn = expand(
                    None, linear.indices, 0, size=linear.shape[1]
                )  # sorted, unique: marked in a table
                needed = np.searchsorted(objective.closure, drawn)  # closure positions
                if (needed >= objective.size).any() or (
                    objective.closure[needed.clip(max=objective.size - 1)] != drawn
                ).any():
                    raise ValueError(
                        "every sampled neighbour must be an end of the objective's rows"
                    )
                near, near_squared = (
                    _select_columns(linear, drawn),
                    _select_columns(near_squared, drawn),
                )
            slot = torch.full((objective.size,), -1, dtype=torch.long, device=device)
            slot[torch.as_tensor(needed, device=device)] = torch.arange(len(needed), device=device)
            own, summed = segment_outer_sum(
                slot[ends], others, others, len(needed), weights=both_curvature, in_group_order=True
            )
            needed_t = torch.as_tensor(needed, dtype=torch.long, device=device)
            # the sums come in the groups' order (a needed node without rows has none, and no curvature):
            # P o P's columns reordered to it
            squared = scipy_to_adjacency(
                _select_columns(near_squared, summed.cpu().numpy()), device
            )
            summed_nodes = needed_t[summed]
            upper, symmetric = _triangle_maps(
                dim, device
            )  # the M are symmetric: spread one triangle
            spread = torch.sparse.mm(
                squared, own.reshape(len(own), dim * dim).index_select(1, upper)
            )
            spread = spread.index_select(1, symmetric).reshape(-1, dim, dim)
            if (
                len(spread) == size
            ):  # every kept row has training rows (kept_theta is then 0..size-1)
                blocks = spread
            else:
                blocks = torch.zeros((size, dim, dim), device=device)
                blocks[objective.kept_theta] = spread
            slot_of_both, row_of_both, product = _reached_by_both_ends(objective, reach)
            kept_index = objective.kept_theta[
                torch.as_tensor(slot_of_both, dtype=torch.long, device=device)
            ]
            row = torch.as_tensor(row_of_both, dtype=torch.long, device=device)
            w = torch.as_tensor(product, dtype=torch.float32, device=device)
            if objective.n_layers == 1:
                # u is an end of each of its rows, so X_u = S_u r_u' (u the user) or r_u S_u' (the item),
                # S_u = sum of the weighted other ends: rank one, no per-row outer product
                position_of = torch.zeros(size, dtype=torch.long, device=device)
                position_of[objective.kept_theta] = objective.kept_position
                at_user_end = objective.row_u[row] == position_of[kept_index]
                other_end = others.index_select(
                    0, torch.where(at_user_end, row, row + len(r_u))
                )  # others = (r_i, r_u)
                partners = torch.zeros((size, dim), device=device).index_add_(
                    0, kept_index, (w * curvature[row])[:, None] * other_end
                )
                own_rep = reps.index_select(0, position_of)
                blocks.baddbmm_(
                    torch.stack([partners, own_rep], 2), torch.stack([own_rep, partners], 1)
                )  # S r' + r S'
            else:
                cross = segment_outer_sum(
                    kept_index,
                    r_i.index_select(0, row),
                    r_u.index_select(0, row),
                    size,
                    weights=w * curvature[row],
                )
                blocks += cross + cross.transpose(1, 2)
            second = torch.zeros(size, device=device).index_add_(
                0, kept_index, 2 * w * residual[row]
            )
            l2 = l2 + second
            row_sum = objective.model.propagate(
                torch.ones((objective.size, 1), device=device), objective.adjacency
            ).squeeze(1)  # s = P 1
            s_u, s_i = row_sum[objective.row_u], row_sum[objective.row_i]
            spread_r = curvature * (s_u * norm_i + s_i * norm_u)  # sigma' T_r
            by_end = torch.zeros(objective.size, device=device).index_add_(
                0,
                ends,
                torch.cat(
                    [spread_r * norm_i + magnitude * s_i, spread_r * norm_u + magnitude * s_u]
                ),
            )
            own_square = torch.zeros(objective.size, device=device).index_add_(
                0, ends, torch.cat([curvature * norm_i**2, curvature * norm_u**2])
            )
            linear = scipy_to_adjacency(near, device)
            coupling[objective.kept_theta] = (
                torch.sparse.mm(linear, by_end[needed_t][:, None])
                - torch.sparse.mm(squared, own_square[summed_nodes][:, None])
            ).squeeze(1)
            coupling.index_add_(
                0,
                kept_index,
                -2 * w * (curvature[row] * norm_u[row] * norm_i[row] + magnitude[row]),
            )
            coupling.clamp_(min=0)
        blocks.diagonal(dim1=1, dim2=2).add_(l2[:, None])
    return blocks, coupling
