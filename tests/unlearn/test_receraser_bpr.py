import numpy as np
import pytest
import torch

from recunlearn.data import DeletionRequest, user_deletion
from recunlearn.testing import FAST_TRAIN, UnlearnerConformance
from recunlearn.unlearn import get_method
from recunlearn.unlearn.aggregate import (
    FoldInConfig,
    OwnerAggregator,
    OwnerConfig,
    build_aggregator,
    fold_in,
)
from recunlearn.unlearn.receraser import SHARD_L2_FACTOR
from tests.unlearn.test_receraser import assert_exact_after_forget

BPR_TRAIN = {**FAST_TRAIN, "loss": "bpr"}


def assert_aggregator_as_from_scratch(model):
    scratch = build_aggregator(model.config.aggregator)
    scratch.fit(
        model.models, model.train, model.valid, range(model.config.n_shards), model.assignment
    )
    np.testing.assert_array_equal(scratch.weights, model.aggregator.weights)
    for kept, fresh in zip(model.aggregator.users, scratch.users):
        assert (kept is None and fresh is None) or torch.equal(kept, fresh)


class TestRecEraserOnBPR(UnlearnerConformance):
    method = "receraser"
    config = {"n_shards": 2, "train": BPR_TRAIN}

    def test_bpr_user_partition_defaults_to_foldin_and_heavier_shard_l2(self, fitted):
        assert fitted.config.aggregator == FoldInConfig()
        job = fitted.shard_job(0)
        assert job.train_config.l2 == pytest.approx(fitted.config.train.l2 * SHARD_L2_FACTOR)
        bce = get_method("receraser")({"n_shards": 3, "train": FAST_TRAIN})
        assert bce.config.aggregator.kind == "attention" and bce.config.aggregator.loss == "bce"
        items = get_method("receraser")({**self.config, "partition": "item"})
        assert items.config.aggregator.kind == "attention"
        named = get_method("receraser")({**self.config, "shard_l2": 0.5})
        assert named.shard_l2() == 0.5

    def test_owner_ranks_each_user_by_the_shard_that_holds_the_users_rows(self, tiny_split):
        fitted = get_method("receraser")({**self.config, "aggregator": {"kind": "owner"}})
        fitted.fit(tiny_split.train, tiny_split.valid)
        train = fitted.train
        users = np.unique(train.user)
        owner = np.array([fitted.assignment[train.user == u][0] for u in users])
        scores = fitted.score_all(users)
        for k in np.unique(owner):
            rows = owner == k
            with torch.no_grad():
                logits = fitted.models[k].score_all(torch.as_tensor(users[rows])).double()
            np.testing.assert_array_equal(scores[rows], 1 / (1 + np.exp(-logits.numpy())))

    def test_with_the_owner_weight_alone_foldin_ranks_as_owner(self, tiny_split):
        def ranking(kind, **options):
            method = get_method("receraser")(
                {**self.config, "aggregator": {"kind": kind, **options}}
            )
            method.fit(tiny_split.train, tiny_split.valid)
            return np.argsort(-method.score_all(np.arange(method.train.n_users)), axis=1)

        np.testing.assert_array_equal(ranking("foldin", own_weight=1.0), ranking("owner"))

    def test_forgetting_a_user_retrains_one_shard_and_folds_in_only_there(self, tiny_split):
        model = self.fresh(tiny_split)
        report = assert_exact_after_forget(model, user_deletion(tiny_split.train, users=["u5"]), 2)
        assert len(report.details["retrained_shards"]) == 1
        assert report.parts[-1].part == "aggregator"
        assert model.aggregator_info == {"shards_folded_in": 1}
        assert_aggregator_as_from_scratch(model)
        gone = model.train.users.index(["u5"])[0]
        present = np.array([m is not None for m in model.models])
        np.testing.assert_array_equal(model.aggregator.weights[gone], present / present.sum())
        assert all(u is None or not u[gone].any() for u in model.aggregator.users)

    def test_forgetting_one_interaction_folds_the_user_in_again_everywhere(self, tiny_split):
        model = self.fresh(tiny_split)
        train = model.train
        pair = (str(train.users.ids[train.user[0]]), str(train.items.ids[train.item[0]]))
        model.forget(DeletionRequest(pairs=[pair]))
        present = sum(m is not None for m in model.models)
        assert model.aggregator_info == {"shards_folded_in": present}
        assert_aggregator_as_from_scratch(model)


def test_fold_in_solves_the_implicit_least_squares_problem_of_each_user():
    generator = torch.Generator().manual_seed(0)
    items = torch.randn(9, 4, generator=generator, dtype=torch.float64)
    users = torch.tensor([0, 0, 0, 2, 2, 2, 2, 2])
    liked = torch.tensor([1, 4, 7, 0, 2, 3, 5, 8])
    vectors = fold_in(items, users, liked, 3, confidence=5.0, l2=1.0, steps=4)
    for u in (0, 2):
        rows = items[liked[users == u]]
        matrix = items.T @ items + 5.0 * rows.T @ rows + torch.eye(4, dtype=torch.float64)
        expected = torch.linalg.solve(matrix, 6.0 * rows.sum(0))
        torch.testing.assert_close(vectors[u], expected)
    assert not vectors[1].any()  # no rows: the solve's zero


def test_owner_weights_are_row_shares_and_uniform_without_rows(tiny_split):
    train = tiny_split.train
    assignment = np.arange(len(train)) % 3
    models = (
        get_method("receraser")(
            {
                "n_shards": 3,
                "train": BPR_TRAIN,
                "partition": "interaction",
                "aggregator": {"kind": "average"},
            }
        )
        .fit(train, tiny_split.valid)
        .models
    )
    aggregator = OwnerAggregator(OwnerConfig())
    kept = train.user != 0
    aggregator.fit(models, train.take(np.flatnonzero(kept)), None, range(3), assignment[kept])
    u = int(train.user[kept][0])
    expected = np.bincount(assignment[kept & (train.user == u)], minlength=3)
    np.testing.assert_allclose(aggregator.weights[u], expected / expected.sum())
    np.testing.assert_array_equal(aggregator.weights[0], np.full(3, 1 / 3))
    np.testing.assert_allclose(aggregator.weights.sum(1), 1.0)
    with pytest.raises(ValueError, match="shard of every training row"):
        aggregator.fit(models, train, None, range(3))
