"""Influence unlearning of BPR models: the pairwise objective's closed forms against autograd, and
an update that moves a model towards retraining."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recunlearn.data import implicit_protocol, random_interactions
from recunlearn.models import LightGCNConfig, MFConfig, build_model
from recunlearn.unlearn import get_method
from recunlearn.unlearn.influence.objective import (
    KeptRows,
    RestrictedObjective,
    gradient,
    hessian_vector_product,
)
from recunlearn.unlearn.influence.pairwise import (
    NegativeSampler,
    pairwise_blocks,
    pairwise_gradient,
)
from tests.conftest import make_tiny


@pytest.fixture(scope="module")
def implicit_split():
    return implicit_protocol(make_tiny(n_users=50, n_items=30, density=0.5), threshold=3.0, k=2)


def objective(config, split, kept_users, kept_items, seed=0):
    model = build_model(config, split.train, seed)
    with (
        torch.no_grad()
    ):  # away from the initialisation, so that every term of the Hessian is non-trivial
        model.user_emb.weight.normal_(0, 0.5, generator=torch.Generator().manual_seed(seed))
        model.item_emb.weight.normal_(0, 0.5, generator=torch.Generator().manual_seed(seed + 1))
    triples = NegativeSampler(split.train, 2, seed).triples(split.train.user, split.train.item)
    graph = None
    if config.kind == "lightgcn":
        from recunlearn.models.graph import adjacency_to_scipy

        graph = adjacency_to_scipy(model.adjacency)
    kept = KeptRows(np.asarray(kept_users), np.asarray(kept_items))
    return RestrictedObjective(
        model,
        kept,
        triples.users,
        triples.items,
        np.zeros(len(triples), np.float32),
        triples.weights,
        0.05,
        graph,
        getattr(model, "adjacency", None),
        negatives=triples.negatives,
    )


@pytest.mark.parametrize(
    "config",
    [MFConfig(dim=4), LightGCNConfig(dim=4, n_layers=1), LightGCNConfig(dim=4, n_layers=2)],
)
def test_the_closed_form_gradient_is_autograds(implicit_split, config):
    f = objective(config, implicit_split, [0, 3, 7], [1, 2, 5])
    assert torch.allclose(pairwise_gradient(f), gradient(f, f.theta0), atol=1e-5, rtol=1e-4)


def test_the_negatives_avoid_the_users_positives(implicit_split):
    train = implicit_split.train
    triples = NegativeSampler(train, 3, 0).triples(train.user, train.item)
    positives = set(zip(train.user.tolist(), train.item.tolist()))
    assert not any(
        (u, j) in positives for u, j in zip(triples.users.tolist(), triples.negatives.tolist())
    )
    assert np.allclose(
        np.bincount(np.repeat(np.arange(len(train)), 3), weights=triples.weights), 1.0
    )


def dense_hessian(f):
    hvp = hessian_vector_product(f, f.theta0)
    n, d = f.theta0.shape
    columns = []
    for k in range(n * d):
        v = torch.zeros(n * d)
        v[k] = 1
        columns.append(hvp(v.view(n, d)).reshape(-1))
    return torch.stack(columns, 1)


def test_mf_blocks_are_the_exact_diagonal_blocks_and_the_coupling_bounds_the_rest(implicit_split):
    f = objective(MFConfig(dim=3), implicit_split, [0, 3], [1, 2, 5])
    blocks, coupling = pairwise_blocks(f)
    hessian = dense_hessian(f)
    d = 3
    for row in range(len(f.theta0)):
        exact = hessian[row * d : (row + 1) * d, row * d : (row + 1) * d]
        assert torch.allclose(blocks.dense()[row], exact, atol=1e-4)
    # block Gershgorin: diag blocks + coupling I dominate the whole Hessian
    upper = torch.block_diag(
        *[blocks.dense()[r] + coupling[r] * torch.eye(d) for r in range(len(f.theta0))]
    )
    assert torch.linalg.eigvalsh(upper - hessian).min() > -1e-4


@pytest.mark.parametrize("kind", ["mf", "lightgcn"])
def test_ifru_moves_a_bpr_model_towards_retraining_on_the_removed_rows(kind):
    split = implicit_protocol(
        make_tiny(n_users=120, n_items=60, density=0.4, seed=2), threshold=3.0, k=2
    )
    config = {
        "model": {"kind": kind, "dim": 8},
        "train": {"loss": "bpr", "max_epochs": 40, "patience": 40, "batch_size": 256, "seed": 0},
    }
    original = get_method("retrain")(config).fit(split.train, split.valid)
    request = random_interactions(split.train, 0.05, seed=1)
    removed = split.train.take(request.rows(split.train))
    before = original.score_index(removed.user, removed.item)
    ifru = get_method("ifru").adopt(original, {"guard": False, "hessian_rows_per_node": None})
    report = ifru.forget(request)
    original.forget(request)  # retraining
    retrained = original.score_index(removed.user, removed.item)
    after = ifru.score_index(removed.user, removed.item)
    assert report.details["update"] == "applied"
    assert np.abs(after - retrained).mean() < np.abs(before - retrained).mean()
    assert after.mean() < before.mean()  # the removed positives are liked less once forgotten


@pytest.mark.parametrize(
    "config",
    [MFConfig(dim=3), LightGCNConfig(dim=3, n_layers=1), LightGCNConfig(dim=3, n_layers=2)],
)
def test_the_closed_form_hessian_vector_product_is_autograds(implicit_split, config):
    from recunlearn.unlearn.influence.pairwise import pairwise_hvp

    f = objective(config, implicit_split, [0, 3, 7], [1, 2, 5])
    v = torch.randn(f.theta0.shape, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(
        pairwise_hvp(f)(v), hessian_vector_product(f, f.theta0)(v), atol=1e-5, rtol=1e-4
    )
