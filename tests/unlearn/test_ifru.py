"""IFRU on MF and LightGCN: the contract, the graph after forgetting, pruning, orphans, the guard."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recunlearn.data import DeletionRequest, label_flip_attack, user_deletion
from recunlearn.evaluate.completeness import parameter_distance, score_distance
from recunlearn.models.graph import adjacency_to_scipy, normalized_adjacency
from recunlearn.testing import FAST_TRAIN, UnlearnerConformance
from recunlearn.train.loop import TrainConfig, fit_model
from recunlearn.unlearn import get_method
from recunlearn.unlearn.ifru import importance_scores
from recunlearn.unlearn.influence.solvers import SolveResult

LIGHTGCN = {"model": {"kind": "lightgcn", "dim": 16}, "train": FAST_TRAIN}


class TestIFRU(UnlearnerConformance):
    method = "ifru"


class TestIFRULightGCN(UnlearnerConformance):
    method = "ifru"
    config = LIGHTGCN


def test_lightgcn_scores_with_the_graph_without_the_deleted_edges(tiny_split):
    train, request = label_flip_attack(tiny_split.train, 0.1, seed=0)
    method = get_method("ifru")(LIGHTGCN).fit(train, tiny_split.valid)
    report = method.forget(request)
    rest = method.train
    rebuilt = normalized_adjacency(
        rest.n_users, rest.n_items, rest.user[rest.label > 0], rest.item[rest.label > 0]
    )
    now = adjacency_to_scipy(method.model.adjacency)
    np.testing.assert_array_equal(now.indices, adjacency_to_scipy(rebuilt).indices)
    np.testing.assert_array_equal(now.data, adjacency_to_scipy(rebuilt).data)
    assert report.details["spillover_rows"] > 0 and report.details["hessian_rows"] > 0
    assert report.details["update"] in ("applied",) or report.details["update"].startswith(
        "rejected"
    )


def test_pruning_keeps_seeds_and_follows_the_quantile(tiny_split):
    train = tiny_split.train
    removed = train.take(np.arange(6))
    seeds_only = importance_scores(removed, train, hops=0)
    assert set(np.flatnonzero(seeds_only)) == set(removed.user) | set(train.n_users + removed.item)
    spread = importance_scores(removed, train, hops=1)
    assert (spread > 0).sum() > (seeds_only > 0).sum() and (spread >= seeds_only).all()
    wide = get_method("ifru")(keep_quantile=0.0, train=FAST_TRAIN).fit(train, tiny_split.valid)
    narrow = get_method("ifru")(keep_quantile=0.9, train=FAST_TRAIN).fit(train, tiny_split.valid)
    request = DeletionRequest.from_rows(train, np.arange(6))
    kept = [m.forget(request).details for m in (wide, narrow)]
    assert (
        kept[0]["kept_users"] + kept[0]["kept_items"]
        > kept[1]["kept_users"] + kept[1]["kept_items"]
    )
    assert kept[1]["kept_users"] + kept[1]["kept_items"] >= kept[1]["seeds"]


@pytest.mark.parametrize("config", [{"train": FAST_TRAIN}, LIGHTGCN], ids=["mf", "lightgcn"])
def test_a_user_removed_entirely_goes_back_to_its_initial_row(tiny_split, config):
    """Retraining never touches a user with no data: its row stays at the seeded initial value."""
    method = get_method("ifru")(config).fit(tiny_split.train, tiny_split.valid)
    report = method.forget(user_deletion(tiny_split.train, users=["u7"]))
    u = tiny_split.train.users.index(["u7"])[0]
    retrained = fit_model(
        method.config.model, method.train, tiny_split.valid, method.config.train
    ).model
    torch.testing.assert_close(method.model.user_emb.weight[u], retrained.user_emb.weight[u])
    assert report.details["reset_rows"] >= 1
    assert np.isfinite(method.score_index(tiny_split.test.user, tiny_split.test.item)).all()


def test_influence_moves_towards_retraining(tiny_split):
    """With the guard off and training run to convergence, the Newton step brings the scores closer
    to the retrained model's than the original model's are (on the removed rows and on test).

    The CG step uses the exact Hessian: on 506 rows the default 8-rows-per-node sample changes
    how far the step goes from draw to draw (0.35-0.87 of the test distance left over 8 draws),
    though never its direction, which the default per-row step below checks."""
    converged = {
        "max_epochs": 150,
        "patience": 150,
        "batch_size": 4096,
        "lr": 0.02,
        "l2": 0.05,
        "seed": 0,
    }
    train = tiny_split.train
    request = DeletionRequest.from_rows(train, np.arange(0, len(train), 9))
    original = get_method("retrain")(train=converged).fit(train, None)
    method = get_method("if").adopt(
        original,
        {"guard": False, "solver": {"method": "cg", "tol": 1e-6}, "hessian_rows_per_node": None},
    )
    per_row = get_method("if").adopt(
        original, {"guard": False}
    )  # the default 'block' solver, sampled Hessian
    assert parameter_distance(method, original) == 0.0
    removed = train.take(request.rows(train))
    original.forget(request)  # now the retrained model
    start = [score_distance(method, original, d) for d in (removed, tiny_split.test)]
    method.forget(request)
    end = [score_distance(method, original, d) for d in (removed, tiny_split.test)]
    assert end[0] < 0.85 * start[0] and end[1] < 0.85 * start[1]
    per_row.forget(request)  # a shorter step (its block-diagonal majorant), in the same direction
    end = [score_distance(per_row, original, d) for d in (removed, tiny_split.test)]
    assert end[0] < start[0] and end[1] < start[1]


def test_guard_rejects_an_update_that_hurts_validation(tiny_split, monkeypatch):
    import recunlearn.unlearn.influence.unlearner as common

    method = get_method("ifru")(train=FAST_TRAIN, solver={"method": "cg"}).fit(
        tiny_split.train, tiny_split.valid
    )
    test = tiny_split.test
    before = method.score_index(test.user, test.item)

    def harmful(config, hvp, b, **_):
        noise = torch.randn(b.shape, generator=torch.Generator().manual_seed(0))
        return SolveResult(x=10 * noise, iterations=1), 0.0

    monkeypatch.setattr(common, "solve", harmful)
    report = method.forget(DeletionRequest.from_rows(tiny_split.train, np.arange(10)))
    assert report.details["update"].startswith("rejected")
    assert report.details["valid_auc_update"] < report.details["valid_auc_no_update"]
    np.testing.assert_array_equal(method.score_index(test.user, test.item), before)


def test_adopt_copies_the_model_and_refuses_other_settings(tiny_split):
    original = get_method("retrain")(train=FAST_TRAIN).fit(tiny_split.train, tiny_split.valid)
    method = get_method("ifru").adopt(original)
    test = tiny_split.test
    np.testing.assert_array_equal(
        method.score_index(test.user, test.item), original.score_index(test.user, test.item)
    )
    assert method.model is not original.model
    with pytest.raises(ValueError, match="same model and training"):
        get_method("ifru").adopt(original, {"train": {**FAST_TRAIN, "lr": 0.5}})
    assert TrainConfig(**FAST_TRAIN) == original.config.train


@pytest.mark.parametrize("kind", ["pairs", "users", "items", "label_flip"])
@pytest.mark.parametrize("config", [{"train": FAST_TRAIN}, LIGHTGCN], ids=["mf", "lightgcn"])
def test_every_deletion_kind(tiny_split, kind, config):
    from recunlearn.data import item_deletion, random_interactions

    train = tiny_split.train
    if kind == "label_flip":
        train, request = label_flip_attack(train, 0.05, seed=1)
    else:
        request = {
            "pairs": lambda: random_interactions(train, 0.05, seed=1),
            "users": lambda: user_deletion(train, n_users=2, seed=1),
            "items": lambda: item_deletion(train, n_items=2, seed=1),
        }[kind]()
    method = get_method("ifru")(config).fit(train, tiny_split.valid)
    report = method.forget(request)
    assert (
        report.removed_rows == int(request.rows(train).sum())
        and len(method.train) == len(train) - report.removed_rows
    )
    assert report.details["update"] == "applied" or report.details["update"].startswith(
        ("rejected", "none")
    )
    assert np.isfinite(method.score_index(tiny_split.test.user, tiny_split.test.item)).all()


def test_save_and_load_after_forgetting_keep_the_scores(tiny_split, tmp_path):
    """The saved model rebuilds LightGCN's graph from the remaining data: the same graph forget made."""
    from recunlearn.unlearn import Unlearner

    train, request = label_flip_attack(tiny_split.train, 0.1, seed=2)
    method = get_method("ifru")(LIGHTGCN).fit(train, tiny_split.valid)
    method.forget(request)
    method.save(tmp_path / "m")
    loaded = Unlearner.load(tmp_path / "m")
    test = tiny_split.test
    np.testing.assert_array_equal(
        loaded.score_index(test.user, test.item), method.score_index(test.user, test.item)
    )
    assert loaded.forget(request).noop


@pytest.mark.parametrize("config", [{}, LIGHTGCN], ids=["mf", "lightgcn"])
def test_a_sampled_hessian_uses_fewer_rows_and_moves_the_model_as_the_exact_one(tiny_split, config):
    """hessian_rows_per_node caps the Hessian's rows per node; its step points where the exact one does."""
    train, request = label_flip_attack(tiny_split.train, 0.1, seed=0)
    original = get_method("ifru")({**config, "train": FAST_TRAIN}).fit(train, tiny_split.valid)
    steps, rows = {}, {}
    for cap in (None, 2):
        method = get_method("ifru").adopt(original, {"hessian_rows_per_node": cap, "guard": False})
        before = (
            torch.cat([method.model.user_emb.weight, method.model.item_emb.weight]).detach().clone()
        )
        report = method.forget(request)
        steps[cap] = (
            torch.cat([method.model.user_emb.weight, method.model.item_emb.weight]).detach()
            - before
        )
        rows[cap] = report.details["hessian_rows"]
    assert rows[2] < rows[None]
    cosine = torch.nn.functional.cosine_similarity(steps[2].flatten(), steps[None].flatten(), dim=0)
    assert cosine > 0.9


def test_the_importance_floor_bounds_the_kept_nodes_by_the_removed_rows(tiny_split):
    """Sum over nodes of degree x propagated score <= 2 x removed rows, so nodes kept above the floor
    number at most 2 x removed / (floor x smallest degree); a floor of 0 leaves the quantile alone."""
    train = tiny_split.train
    removed = train.take(np.arange(8))
    method = get_method("ifru")(keep_quantile=0.0, train=FAST_TRAIN).fit(train, tiny_split.valid)
    degree = np.concatenate(
        [
            np.bincount(train.user, minlength=train.n_users),
            np.bincount(train.item, minlength=train.n_items),
        ]
    )
    counts = []
    for floor in (0.0, 0.01, 0.05, 0.2):
        method.config = method.config.model_copy(update={"min_importance": floor})
        users, items, info = method.kept_rows(removed, train, None)
        beyond_seeds = len(users) + len(items) - info["seeds"]
        if floor:
            assert beyond_seeds <= 2 * len(removed) / (floor * degree[degree > 0].min())
        counts.append(beyond_seeds)
    assert counts[0] > counts[-1] and counts == sorted(counts, reverse=True)


def test_spillover_leaves_out_only_rows_that_do_not_reach_the_kept_rows(tiny_split):
    """The removed rows' gradient plus the spillover over the rows that reach a kept row equals the
    removed rows' gradient plus the spillover over every moved row, each computed on its own."""
    from recunlearn.models.graph import expand, remove_edges
    from recunlearn.unlearn.influence.objective import KeptRows, RestrictedObjective
    from recunlearn.unlearn.influence.sampling import rows_touching

    train, request = label_flip_attack(tiny_split.train, 0.1, seed=0)
    method = get_method("ifru")(LIGHTGCN).fit(train, tiny_split.valid)
    mask = request.rows(train)
    removed, remaining = train.take(mask), train.drop(mask)
    full = adjacency_to_scipy(method.model.adjacency)
    pos = removed.label > 0
    after = remove_edges(full, train.n_users, removed.user[pos], removed.item[pos])
    kept = KeptRows(np.unique(removed.user)[:1], np.unique(removed.item)[:1])  # a narrow kept set
    gradient, rows = method._gradient_with_spillover(kept, removed, remaining, full, after)
    changed = np.flatnonzero(np.diff(full.indptr) != np.diff(after.indptr))
    every = rows_touching(remaining, expand(full, changed, 1), train.n_users)
    assert rows < every.sum()
    args = (remaining.user[every], remaining.item[every], remaining.label[every])
    objective = RestrictedObjective(method.model, kept, *args, 1.0, 0.0, full)
    direct = RestrictedObjective(
        method.model,
        kept,
        removed.user,
        removed.item,
        removed.label,
        1.0,
        method.config.train.l2,
        full,
    ).analytic_gradient()
    reference = (
        direct + objective.analytic_gradient() - objective.on_graph(after).analytic_gradient()
    )
    torch.testing.assert_close(gradient, reference, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("orphans", [False, True], ids=["flipped", "orphans"])
@pytest.mark.parametrize("config", [{"train": FAST_TRAIN}, LIGHTGCN], ids=["mf", "lightgcn"])
def test_the_guards_validation_auc_is_valid_auc(tiny_split, config, orphans):
    """The guard judges the model that is kept: with every training row of the users who have the
    most validation rows removed (by pair, so their validation rows stay), their rows are reset
    before it scores either candidate."""
    from recunlearn.train.loop import valid_auc

    train, request = label_flip_attack(tiny_split.train, 0.1, seed=0)
    if orphans:
        users, counts = np.unique(tiny_split.valid.user, return_counts=True)
        train = tiny_split.train
        request = DeletionRequest.from_rows(
            train, np.isin(train.user, users[np.argsort(-counts)[:3]])
        )
    method = get_method("ifru")({**config, "min_importance": 0.05}).fit(train, tiny_split.valid)
    report = method.forget(request)
    chosen = "valid_auc_update" if report.details["update"] == "applied" else "valid_auc_no_update"
    assert report.details["reset_rows"] == (3 if orphans else 0)
    assert report.details[chosen] == pytest.approx(
        valid_auc(method.model, tiny_split.valid), abs=1e-9
    )
