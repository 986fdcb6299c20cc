"""Influence machinery: the restricted objective is the training objective, HVPs agree, solvers
match the exact inverse, and failure modes raise clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recunlearn.models import LightGCNConfig, MFConfig, build_model
from recunlearn.models.graph import adjacency_to_scipy, normalized_adjacency, remove_edges
from recunlearn.train.loop import TrainConfig, batch_loss
from recunlearn.unlearn.influence import objective as objective_module
from recunlearn.unlearn.influence.blocks import (
    LowRankBlocks,
    block_preconditioner,
    block_solver,
    hessian_blocks,
    segment_outer_sum,
)
from recunlearn.unlearn.influence.objective import (
    KeptRows,
    RestrictedObjective,
    SolverError,
    gradient,
    hessian_vector_product,
)
from recunlearn.unlearn.influence.sampling import (
    sample_neighbours,
    sample_rows_per_node,
    shuffled_ranks,
)
from recunlearn.unlearn.influence.solvers import (
    SolverConfig,
    block_newton,
    conjugate_gradient,
    dense_hessian,
    exact_solve,
    lissa,
    quadratic_adam,
    solve,
)


def trained_like(config, data, seed=0, std=0.3):
    """A model with embeddings large enough that the loss is curved (not a near-zero init)."""
    model = build_model(config, data, seed)
    with torch.no_grad():
        g = torch.Generator().manual_seed(seed)
        model.user_emb.weight.normal_(0, std, generator=g)
        model.item_emb.weight.normal_(0, std, generator=g)
    return model


def graph_of(model):
    return (
        adjacency_to_scipy(model.adjacency)
        if getattr(model, "adjacency", None) is not None
        else None
    )


@pytest.mark.parametrize(
    "config", [MFConfig(dim=8), LightGCNConfig(dim=8, n_layers=2)], ids=["mf", "lightgcn"]
)
def test_objective_is_the_training_objective(tiny_split, config):
    train = tiny_split.train
    model = trained_like(config, train)
    every = KeptRows(np.arange(train.n_users), np.arange(train.n_items))
    objective = RestrictedObjective(
        model, every, train.user, train.item, train.label, 1.0, 0.05, graph_of(model)
    )
    expected = batch_loss(
        model,
        torch.tensor(train.user),
        torch.tensor(train.item),
        torch.tensor(train.label),
        TrainConfig(l2=0.05),
    )
    assert objective(objective.theta0).item() / len(train) == pytest.approx(
        expected.item(), rel=1e-5
    )


@pytest.mark.parametrize("whole_share", [1.0, 0.0], ids=["closure", "whole-graph"])
def test_lightgcn_closure_gives_the_full_graph_gradient(tiny_split, monkeypatch, whole_share):
    """Propagating only the rows' n_layers-hop closure gives exactly the full propagation's gradient,
    and so does propagating the whole graph, which objectives reaching most nodes do."""
    monkeypatch.setattr(objective_module, "WHOLE_GRAPH_SHARE", whole_share)
    train = tiny_split.train
    model = trained_like(LightGCNConfig(dim=8, n_layers=2), train)
    kept = KeptRows(np.array([0, 5, 7]), np.array([1, 2]))
    rows = slice(0, 15)
    objective = RestrictedObjective(
        model,
        kept,
        train.user[rows],
        train.item[rows],
        train.label[rows],
        1.0,
        0.0,
        graph_of(model),
    )
    assert (objective.size < train.n_users + train.n_items) == (whole_share == 1.0)
    theta = kept.gather(model).requires_grad_(True)
    users_w = model.user_emb.weight.detach().index_put((torch.as_tensor(kept.users),), theta[:3])
    items_w = model.item_emb.weight.detach().index_put((torch.as_tensor(kept.items),), theta[3:])
    logits = model.logits_from(
        users_w, items_w, torch.tensor(train.user[rows]), torch.tensor(train.item[rows])
    )
    full = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, torch.tensor(train.label[rows]), reduction="sum"
    )
    (expected,) = torch.autograd.grad(full, theta)
    torch.testing.assert_close(
        gradient(objective, kept.gather(model)), expected, rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize(
    "config", [MFConfig(dim=6), LightGCNConfig(dim=6, n_layers=1)], ids=["mf", "lightgcn"]
)
def test_analytic_hvp_equals_double_backprop(tiny_split, config):
    train = tiny_split.train
    model = trained_like(config, train)
    kept = KeptRows(np.array([0, 3, 9]), np.array([4, 6]))
    objective = RestrictedObjective(
        model, kept, train.user, train.item, train.label, 1.0, 0.05, graph_of(model)
    )
    autograd, analytic = (
        hessian_vector_product(objective, objective.theta0),
        objective.analytic_hvp(),
    )
    v = torch.randn(objective.theta0.shape, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(analytic(v), autograd(v), rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def small_system(tiny_split):
    """A small positive-definite Hessian of the MF objective and a gradient to invert it on."""
    train = tiny_split.train
    model = trained_like(MFConfig(dim=4), train, std=0.2)
    kept = KeptRows(np.arange(10), np.arange(8))
    objective = RestrictedObjective(
        model, kept, train.user, train.item, train.label, 1.0, 0.5, None
    )
    hvp = hessian_vector_product(objective, objective.theta0)
    b = gradient(objective, objective.theta0)
    return objective, hvp, b, dense_hessian(hvp, b)


def relative_error(x, reference):
    return float((x.double() - reference.double()).norm() / reference.double().norm())


def test_cg_matches_the_exact_inverse(small_system):
    objective, hvp, b, matrix = small_system
    assert torch.linalg.eigvalsh(matrix).min() > 0, "the test system should be positive definite"
    exact = exact_solve(hvp, b, damping=0.01).x
    reference = torch.linalg.solve(
        matrix + 0.01 * torch.eye(len(matrix), dtype=torch.float64), b.reshape(-1).double()
    )
    assert relative_error(exact.reshape(-1), reference) < 1e-5
    plain = conjugate_gradient(hvp, b, damping=0.01, tol=1e-8, max_iter=500)
    assert relative_error(plain.x, exact) < 1e-4 and plain.converged
    blocks = block_preconditioner(objective)
    preconditioned = conjugate_gradient(
        hvp, b, damping=0.01, tol=1e-8, max_iter=500, preconditioner=block_solver(blocks, 0.01)
    )
    assert relative_error(preconditioned.x, exact) < 1e-4
    assert preconditioned.iterations < plain.iterations, (
        "block-Jacobi preconditioning should pay off"
    )
    diagonal = conjugate_gradient(
        hvp,
        b,
        damping=0.01,
        tol=1e-8,
        max_iter=500,
        preconditioner=block_solver(block_preconditioner(objective, diagonal=True), 0.01),
    )
    assert relative_error(diagonal.x, exact) < 1e-4


def test_lissa_and_quadratic_approach_the_exact_inverse(small_system):
    _, hvp, b, _ = small_system
    exact = exact_solve(hvp, b, damping=0.05).x
    assert relative_error(lissa(hvp, b, damping=0.05, depth=5000, tol=1e-10).x, exact) < 1e-3
    adam = quadratic_adam(hvp, b, damping=0.05, lr=0.05, steps=400, every=10)
    assert relative_error(adam.x, exact) < 0.1
    assert adam.history[-1] < adam.history[0]


def test_damping_makes_a_singular_hessian_solvable():
    singular = torch.diag(torch.tensor([2.0, 1.0, 0.0]))
    b = torch.tensor([1.0, 1.0, 1.0])
    result = conjugate_gradient(lambda v: singular @ v, b, damping=0.1, tol=1e-10)
    torch.testing.assert_close(result.x, torch.tensor([1 / 2.1, 1 / 1.1, 1 / 0.1]))
    with pytest.raises(SolverError, match="non-positive curvature|diverged"):
        conjugate_gradient(lambda v: singular @ v, b, damping=0.0)


def test_solvers_raise_clear_errors_on_divergence():
    indefinite = torch.diag(torch.tensor([1.0, -1.0]))
    b = torch.tensor([1.0, 1.0])
    with pytest.raises(SolverError, match="diverged"):
        lissa(lambda v: indefinite @ v, b, scale=1.0, depth=2000)
    negative = torch.diag(
        torch.tensor([0.5, -3.0])
    )  # the dominant eigenvalue is negative: named, not "scale"
    with pytest.raises(
        SolverError, match="positive definite damped Hessian; its dominant eigenvalue is -2.9"
    ):
        lissa(lambda v: negative @ v, b, damping=0.1)
    with pytest.raises(SolverError, match="too large"):
        exact_solve(lambda v: v, torch.ones(10), max_size=5)
    raised = solve(
        SolverConfig(method="cg", damping=0.0, max_damping_raises=4),
        lambda v: indefinite @ v,
        b,
        scale=1.0,
    )
    assert raised[1] > 1.0, "CG retries with more damping until the system is positive definite"
    with pytest.raises(SolverError):
        solve(
            SolverConfig(method="cg", damping=0.0, max_damping_raises=0),
            lambda v: indefinite @ v,
            b,
            scale=1.0,
        )


def test_remove_edges_equals_rebuilding_the_graph(tiny_split):
    train = tiny_split.train
    model = build_model(LightGCNConfig(), train, 0)
    pos = np.flatnonzero(train.label > 0)
    gone = np.zeros(len(train), bool)
    gone[pos[::5]] = True
    gone[np.flatnonzero(train.user == 2)] = True  # a whole user
    updated = remove_edges(
        graph_of(model),
        train.n_users,
        train.user[gone & (train.label > 0)],
        train.item[gone & (train.label > 0)],
    )
    rest = train.drop(gone)
    rebuilt = adjacency_to_scipy(
        normalized_adjacency(
            train.n_users, train.n_items, rest.user[rest.label > 0], rest.item[rest.label > 0]
        )
    )
    np.testing.assert_array_equal(updated.indptr, rebuilt.indptr)
    np.testing.assert_array_equal(updated.indices, rebuilt.indices)
    np.testing.assert_array_equal(updated.data, rebuilt.data)


def diagonal_blocks(matrix, size, dim):
    return torch.stack(
        [matrix[k * dim : (k + 1) * dim, k * dim : (k + 1) * dim] for k in range(size)]
    )


@pytest.mark.parametrize(
    "config",
    [MFConfig(dim=4), LightGCNConfig(dim=4, n_layers=1), LightGCNConfig(dim=4, n_layers=2)],
    ids=["mf", "lightgcn-1", "lightgcn-2"],
)
def test_hessian_blocks_are_the_diagonal_blocks_of_the_hessian(tiny_split, config):
    """Through LightGCN's propagation too: the blocks equal the dense Hessian's, second-order term included."""
    train = tiny_split.train
    model = trained_like(config, train, std=0.4)
    kept = KeptRows(np.array([0, 3, 9, 11]), np.array([1, 4, 6]))
    objective = RestrictedObjective(
        model, kept, train.user, train.item, train.label, 1.0, 0.05, graph_of(model)
    )
    matrix = dense_hessian(hessian_vector_product(objective, objective.theta0), objective.theta0)
    expected = diagonal_blocks(matrix, kept.size, 4)
    blocks, coupling = hessian_blocks(objective)
    torch.testing.assert_close(blocks.double(), expected, rtol=1e-4, atol=1e-5)
    size = kept.size
    off = matrix - torch.block_diag(*expected)
    true_coupling = torch.stack(
        [
            sum(
                torch.linalg.matrix_norm(off[u * 4 : (u + 1) * 4, w * 4 : (w + 1) * 4], ord=2)
                for w in range(size)
            )
            for u in range(size)
        ]
    )
    assert (coupling.double() >= true_coupling - 1e-5).all(), (
        "the coupling bound must bound the true coupling"
    )
    majorant = torch.block_diag(
        *(expected + coupling.double()[:, None, None] * torch.eye(4, dtype=torch.float64))
    )
    assert torch.linalg.eigvalsh(majorant - matrix).min() > -1e-5, (
        "block diagonal + coupling >= Hessian"
    )


def test_blocks_on_every_neighbour_drawn_are_the_full_blocks(tiny_split):
    """A neighbour sample that holds every neighbour (per_node >= degree) gives the same blocks and
    coupling as the full propagation rows."""
    train = tiny_split.train
    model = trained_like(LightGCNConfig(dim=4, n_layers=1), train, std=0.4)
    kept = KeptRows(np.array([0, 3, 9, 11]), np.array([1, 4, 6]))
    graph = graph_of(model)
    objective = RestrictedObjective(
        model, kept, train.user, train.item, train.label, 1.0, 0.05, graph
    )
    everything = sample_neighbours(
        graph, kept.nodes(train.n_users), int(np.diff(graph.indptr).max())
    )
    expected, expected_coupling = hessian_blocks(objective)
    blocks, coupling = hessian_blocks(objective, neighbours=everything)
    torch.testing.assert_close(blocks, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(coupling, expected_coupling, rtol=1e-5, atol=1e-6)
    # a kept node none of the rows touch (an item seen only in validation, say) has no block, and no
    # place in the sums, sampled or not
    assert graph[3].nnz > 0
    rows = (train.user != 3) & ~np.isin(
        train.item, graph[3].indices - train.n_users
    )  # nor its items
    objective = RestrictedObjective(
        model, kept, train.user[rows], train.item[rows], train.label[rows], 1.0, 0.05, graph
    )
    expected, _ = hessian_blocks(objective)
    torch.testing.assert_close(
        hessian_blocks(objective, neighbours=everything)[0], expected, rtol=1e-5, atol=1e-6
    )


def test_neighbour_sample_is_bounded_and_unbiased(tiny_split):
    """At most per_node neighbours besides the node itself, and the weighted sums of P and P^2 over
    any node values average to the sums over the whole propagation rows."""
    model = trained_like(LightGCNConfig(dim=4, n_layers=1), tiny_split.train)
    graph = graph_of(model)
    nodes = np.argsort(-np.diff(graph.indptr))[:6]  # the busiest nodes
    assert np.diff(graph.indptr)[nodes].min() > 3
    value = np.random.default_rng(0).random(graph.shape[0])
    full = (sp.identity(graph.shape[0], format="csr") + graph)[nodes] / 2
    exact_linear, exact_squared = full @ value, full.multiply(full) @ value
    linear, squared = [], []
    for seed in range(400):
        sample = sample_neighbours(graph, nodes, 3, seed=seed)
        assert (np.diff(sample.linear.indptr) <= 4).all()
        assert len(sample.nodes) <= 4 * len(nodes)
        linear.append(sample.linear @ value)
        squared.append(sample.squared @ value)
    np.testing.assert_allclose(np.mean(linear, 0), exact_linear, rtol=0.05)
    np.testing.assert_allclose(np.mean(squared, 0), exact_squared, rtol=0.05)
    with pytest.raises(ValueError, match="one-layer"):
        two = trained_like(LightGCNConfig(dim=4, n_layers=2), tiny_split.train)
        kept = KeptRows(np.array([0]), np.array([1]))
        train = tiny_split.train
        objective = RestrictedObjective(
            two, kept, train.user, train.item, train.label, 1.0, 0.0, graph_of(two)
        )
        hessian_blocks(
            objective, neighbours=sample_neighbours(graph_of(two), kept.nodes(train.n_users), 3)
        )


def test_segment_outer_sum_matches_a_loop():
    generator = torch.Generator().manual_seed(0)
    segments = torch.tensor([2, 0, 2, -1, 2, 1, 0, 2])
    left, right = torch.randn(8, 3, generator=generator), torch.randn(8, 3, generator=generator)
    expected = torch.zeros(4, 3, 3)
    for k, s in enumerate(segments.tolist()):
        if s >= 0:
            expected[s] += torch.outer(left[k], right[k])
    torch.testing.assert_close(segment_outer_sum(segments, left, right, 4, budget=6), expected)
    weights = torch.rand(8, generator=generator)
    expected = torch.zeros(4, 3, 3)
    for k, s in enumerate(segments.tolist()):
        if s >= 0:
            expected[s] += weights[k] * torch.outer(right[k], right[k])
    torch.testing.assert_close(
        segment_outer_sum(segments, right, right, 4, weights=weights), expected
    )
    signed = weights - 0.5  # negative weights: not a Gram matrix, the general path
    expected = torch.zeros(4, 3, 3)
    for k, s in enumerate(segments.tolist()):
        if s >= 0:
            expected[s] += signed[k] * torch.outer(left[k], right[k])
    torch.testing.assert_close(
        segment_outer_sum(segments, left, right, 4, weights=signed, budget=6), expected
    )


def test_segment_outer_sum_in_group_order_holds_the_same_sums():
    generator = torch.Generator().manual_seed(1)
    segments = torch.tensor([4, 0, 4, -1, 4, 1, 0, 4, 1, 1, 1, 0])  # segments 2 and 3 have no rows
    rows, weights = torch.randn(12, 3, generator=generator), torch.rand(12, generator=generator)
    scattered = segment_outer_sum(segments, rows, rows, 5, weights=weights, budget=6)
    ordered, order = segment_outer_sum(
        segments, rows, rows, 5, weights=weights, budget=6, in_group_order=True
    )
    assert sorted(order.tolist()) == [0, 1, 4]
    torch.testing.assert_close(ordered, scattered[order])


def test_block_newton_is_exact_when_the_hessian_is_block_diagonal(tiny_split):
    """Every user with a single item and only the users kept: no cross blocks, so the per-row
    Newton step is the exact inverse."""
    train = tiny_split.train
    first = np.unique(train.user, return_index=True)[1]
    rows = train.take(np.isin(np.arange(len(train)), first))
    model = trained_like(MFConfig(dim=4), train, std=0.4)
    kept = KeptRows(np.unique(rows.user)[:12], np.array([], np.int64))
    objective = RestrictedObjective(model, kept, rows.user, rows.item, rows.label, 1.0, 0.05, None)
    hvp = hessian_vector_product(objective, objective.theta0)
    b = torch.randn(objective.theta0.shape, generator=torch.Generator().manual_seed(2))
    exact = exact_solve(hvp, b, damping=0.01).x
    assert relative_error(block_newton(hessian_blocks(objective)[0], b, 0.01).x, exact) < 1e-4


def test_low_rank_blocks_solve_as_the_formed_blocks_do():
    """Woodbury for blocks with fewer rows than dimensions, a Cholesky for the others, none for empty ones."""
    generator = torch.Generator().manual_seed(0)
    dim, sizes = 6, [0, 1, 3, 5, 6, 7, 15]
    segments = torch.cat(
        [torch.full((n,), k) for k, n in enumerate(sizes)] + [torch.tensor([-1, -1])]
    )
    rows = torch.randn(len(segments), dim, generator=generator)
    weights = torch.rand(len(segments), generator=generator)
    blocks = LowRankBlocks(segments, rows, weights, torch.rand(len(sizes), generator=generator))
    b = torch.randn(len(sizes), dim, generator=generator)
    coupling = torch.rand(len(sizes), generator=generator)
    formed = blocks.dense()
    expected = torch.linalg.solve(formed + (0.1 + coupling)[:, None, None] * torch.eye(dim), b)
    torch.testing.assert_close(
        block_newton(blocks, b, 0.1, coupling).x, expected, atol=1e-4, rtol=1e-4
    )
    torch.testing.assert_close(
        block_newton(formed, b, 0.1, coupling).x, expected, atol=1e-4, rtol=1e-4
    )
    assert blocks.diagonal_mean() == pytest.approx(
        float(torch.diagonal(formed, dim1=1, dim2=2).mean()), rel=1e-5
    )


def test_mf_hessian_blocks_as_rows_are_the_formed_blocks(tiny_split):
    train = tiny_split.train
    model = trained_like(MFConfig(dim=8), train)
    kept = KeptRows(np.arange(5), np.arange(4))
    objective = RestrictedObjective(
        model, kept, train.user, train.item, train.label, 1.0, 1e-3, None
    )
    formed, coupling = hessian_blocks(objective)
    rows, coupling_rows = hessian_blocks(objective, low_rank=True)
    torch.testing.assert_close(rows.dense(), formed)
    torch.testing.assert_close(coupling_rows, coupling)


def test_block_newton_is_close_to_cg_and_rescues_indefinite_blocks(small_system):
    """With cross blocks (a real MF problem) the per-row step is an approximation: measured here,
    it points the same way as the exact solve and is within a fraction of its size."""
    objective, hvp, b, _ = small_system
    exact = exact_solve(hvp, b, damping=0.01).x
    cg = conjugate_gradient(hvp, b, damping=0.01, tol=1e-8, max_iter=500).x
    block = block_newton(hessian_blocks(objective)[0], b, 0.01).x
    cosine = float((block * cg).sum() / (block.norm() * cg.norm()))
    print(
        f"per-row Newton vs CG: relative distance {relative_error(block, exact):.3f}, cosine {cosine:.3f}"
    )
    assert cosine > 0.95 and relative_error(block, exact) < 0.3
    indefinite = torch.diag(torch.tensor([1.0, -2.0]))[None]
    solved = block_newton(indefinite, torch.tensor([[1.0, 1.0]]), 0.5)
    assert solved.raised_blocks == 1
    torch.testing.assert_close(solved.x, torch.tensor([[1 / 3.5, 1 / 0.5]]))


def skewed_rows(n_rows=3000, seed=0):
    """Rows whose item degrees range from 1 to hundreds (a popular head and a long tail)."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, 60, n_rows)
    items = np.minimum(rng.zipf(1.6, n_rows) - 1, 299)
    return users, items


@pytest.mark.parametrize(
    "offset", [0, 1 << 16]
)  # ids within 16 bits (radix sort) and beyond (key sort)
def test_shuffled_ranks_are_a_uniform_order_within_each_group(offset):
    groups = np.array([3, 0, 3, 3, 1, 0, 3]) + offset  # group offset + 2 is empty
    first_place = np.zeros(len(groups))
    for seed in range(2000):
        rank, size = shuffled_ranks(groups, np.random.default_rng(seed))
        np.testing.assert_array_equal(size[offset:], [2, 1, 0, 4])
        assert not size[:offset].any()
        for g in (offset, offset + 1, offset + 3):
            np.testing.assert_array_equal(np.sort(rank[groups == g]), np.arange(size[g]))
        first_place += rank == 0
    np.testing.assert_allclose(first_place / 2000, 1 / np.array([4, 2, 4, 4, 1, 2, 4]), atol=0.04)
    empty_rank, empty_size = shuffled_ranks(np.zeros(0, np.int64), np.random.default_rng(0))
    assert len(empty_rank) == 0 and len(empty_size) == 0


def test_row_sample_keeps_every_row_when_no_node_has_more_than_asked():
    users, items = skewed_rows()
    degree = max(np.bincount(users).max(), np.bincount(items).max())
    chosen, weights = sample_rows_per_node(users, items, 60, int(degree))
    np.testing.assert_array_equal(chosen, np.arange(len(users)))
    np.testing.assert_array_equal(weights, 1.0)


def test_row_sample_is_bounded_by_the_nodes_and_unbiased_per_node():
    """At most per_node x nodes rows; each node keeps about min(degree, per_node) rows; and the
    weighted per-node sums of any row value average to the exact sums (Horvitz-Thompson)."""
    users, items = skewed_rows()
    nodes = np.concatenate([users, 60 + items])
    degree = np.bincount(nodes, minlength=360)
    value = np.random.default_rng(1).random(len(users))
    exact = np.bincount(nodes, weights=np.tile(value, 2), minlength=360)
    estimates, kept_per_node = [], []
    for seed in range(300):
        chosen, weights = sample_rows_per_node(users, items, 60, 8, seed=seed)
        assert len(chosen) <= 8 * np.count_nonzero(degree)
        ends = np.concatenate([users[chosen], 60 + items[chosen]])
        estimates.append(
            np.bincount(ends, weights=np.tile(value[chosen] * weights, 2), minlength=360)
        )
        kept_per_node.append(np.bincount(ends, minlength=360))
    seen = degree > 0
    assert (np.mean(kept_per_node, 0)[seen] >= 0.9 * np.minimum(degree, 8)[seen]).all()
    busiest = np.argmax(degree)
    assert np.mean(kept_per_node, 0)[busiest] < 0.25 * degree[busiest]
    relative = np.abs(np.mean(estimates, 0)[seen] - exact[seen]) / exact[seen]
    assert relative.max() < 0.1, "the weighted sample must estimate every node's sum without bias"


def test_row_sample_drawn_by_some_nodes_is_unbiased_at_them_and_bounded_by_them():
    """Only the drawing nodes draw: at most per_node x their number of rows, and the sums at them
    are still estimated without bias; a row with no drawing end is refused (it could never be drawn)."""
    users, items = skewed_rows()
    drawing = np.zeros(360, bool)
    drawing[:20] = True  # users 0-19 draw
    rows = np.flatnonzero(drawing[users])
    users, items = users[rows], items[rows]
    nodes = np.concatenate([users, 60 + items])
    value = np.random.default_rng(2).random(len(users))
    exact = np.bincount(nodes, weights=np.tile(value, 2), minlength=360)[:20]
    estimates = []
    for seed in range(300):
        chosen, weights = sample_rows_per_node(users, items, 60, 4, seed=seed, drawing=drawing)
        assert len(chosen) <= 4 * 20
        estimates.append(
            np.bincount(users[chosen], weights=value[chosen] * weights, minlength=360)[:20]
        )
    seen = exact > 0
    relative = np.abs(np.mean(estimates, 0)[seen] - exact[seen]) / exact[seen]
    assert relative.max() < 0.1
    with pytest.raises(ValueError, match="drawing"):
        sample_rows_per_node(np.array([30]), np.array([5]), 60, 4, drawing=drawing)


def test_objective_on_another_graph_equals_one_built_on_it(tiny_split):
    train = tiny_split.train
    model = trained_like(LightGCNConfig(dim=8, n_layers=2), train)
    graph = graph_of(model)
    pos = np.flatnonzero(train.label > 0)[:5]
    after = remove_edges(graph, train.n_users, train.user[pos], train.item[pos])
    kept = KeptRows(np.array([0, 2, 4]), np.array([1, 3]))
    rows = slice(5, 30)
    args = (model, kept, train.user[rows], train.item[rows], train.label[rows], 1.0, 0.0)
    theta = kept.gather(model)
    torch.testing.assert_close(
        gradient(RestrictedObjective(*args, graph).on_graph(after), theta),
        gradient(RestrictedObjective(*args, after), theta),
        rtol=1e-5,
        atol=1e-6,
    )


@pytest.mark.parametrize(
    "config", [MFConfig(dim=6), LightGCNConfig(dim=6, n_layers=2)], ids=["mf", "lightgcn"]
)
def test_analytic_gradient_equals_autograd(tiny_split, config):
    train = tiny_split.train
    model = trained_like(config, train)
    kept = KeptRows(np.array([0, 3, 9]), np.array([1, 4]))
    weights = np.random.default_rng(0).random(len(train)).astype(np.float32) + 0.5
    objective = RestrictedObjective(
        model, kept, train.user, train.item, train.label, weights, 0.05, graph_of(model)
    )
    torch.testing.assert_close(
        objective.analytic_gradient(), gradient(objective, objective.theta0), rtol=1e-4, atol=1e-6
    )
