import numpy as np
import pytest
import torch

from recunlearn.data import user_deletion
from recunlearn.testing import FAST_TRAIN, UnlearnerConformance
from recunlearn.unlearn import get_method
from recunlearn.unlearn.aggregate import OwnerAggregator, OwnerConfig, build_aggregator
from recunlearn.unlearn.receraser import SHARD_L2_FACTOR
from tests.unlearn.test_receraser import assert_exact_after_forget

BPR_TRAIN = {**FAST_TRAIN, "loss": "bpr"}


def assert_owner_weights_recounted(model):
    scratch = build_aggregator(model.config.aggregator)
    scratch.fit(
        model.models, model.train, model.valid, range(model.config.n_shards), model.assignment
    )
    np.testing.assert_array_equal(scratch.weights, model.aggregator.weights)


class TestRecEraserOnBPR(UnlearnerConformance):
    method = "receraser"
    config = {"n_shards": 2, "train": BPR_TRAIN}

    def test_bpr_user_partition_defaults_to_owner_and_heavier_shard_l2(self, fitted):
        assert fitted.config.aggregator == OwnerConfig()
        job = fitted.shard_job(0)
        assert job.train_config.l2 == pytest.approx(fitted.config.train.l2 * SHARD_L2_FACTOR)
        bce = get_method("receraser")({"n_shards": 3, "train": FAST_TRAIN})
        assert bce.config.aggregator.kind == "attention" and bce.config.aggregator.loss == "bce"
        items = get_method("receraser")({**self.config, "partition": "item"})
        assert items.config.aggregator.kind == "attention"
        named = get_method("receraser")({**self.config, "shard_l2": 0.5})
        assert named.shard_l2() == 0.5

    def test_each_user_is_ranked_by_the_shard_that_holds_the_users_rows(self, fitted):
        train = fitted.train
        users = np.unique(train.user)
        owner = np.array([fitted.assignment[train.user == u][0] for u in users])
        scores = fitted.score_all(users)
        for k in np.unique(owner):
            rows = owner == k
            with torch.no_grad():
                logits = fitted.models[k].score_all(torch.as_tensor(users[rows])).double()
            np.testing.assert_array_equal(scores[rows], 1 / (1 + np.exp(-logits.numpy())))

    def test_forgetting_a_user_retrains_one_shard_and_recounts_the_weights(self, tiny_split):
        model = self.fresh(tiny_split)
        report = assert_exact_after_forget(model, user_deletion(tiny_split.train, users=["u5"]), 2)
        assert len(report.details["retrained_shards"]) == 1
        assert report.parts[-1].part == "aggregator"
        assert_owner_weights_recounted(model)
        gone = model.train.users.index(["u5"])[0]
        present = np.array([m is not None for m in model.models])
        np.testing.assert_array_equal(model.aggregator.weights[gone], present / present.sum())


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
