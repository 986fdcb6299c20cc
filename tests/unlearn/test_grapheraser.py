import math

import numpy as np

from recunlearn.data import user_deletion
from recunlearn.testing import FAST_TRAIN, UnlearnerConformance
from recunlearn.unlearn import get_method
from tests.unlearn.test_receraser import assert_exact_after_forget


class TestGraphEraser(UnlearnerConformance):
    method = "grapheraser"
    config = {"n_shards": 3, "train": FAST_TRAIN}

    def test_bekm_balances_nodes_and_keeps_them_whole(self, fitted):
        train = fitted.train
        users = np.unique(train.user)
        shard_of_user = [np.unique(fitted.assignment[train.user == u]) for u in users]
        assert all(len(s) == 1 for s in shard_of_user)
        nodes_per_shard = np.bincount([s[0] for s in shard_of_user], minlength=3)
        assert nodes_per_shard.max() <= math.ceil(len(users) / 3)
        assert nodes_per_shard.sum() == len(users)

    def test_item_nodes(self, tiny_split):
        model = get_method("grapheraser")({**self.config, "node": "item"}).fit(
            tiny_split.train, tiny_split.valid
        )
        train = model.train
        assert (
            max(len(np.unique(model.assignment[train.item == i])) for i in np.unique(train.item))
            == 1
        )

    def test_forgetting_a_user_retrains_only_its_shard_exactly(self, tiny_split):
        model = self.fresh(tiny_split)
        report = assert_exact_after_forget(model, user_deletion(tiny_split.train, users=["u11"]), 3)
        assert len(report.details["retrained_shards"]) == 1
        assert "aggregator" not in report.changed_parts  # averaging does not depend on the shards

    def test_learned_aggregator_option(self, tiny_split):
        config = {
            **self.config,
            "aggregator": {"kind": "attention", "epochs": 2, "batch_size": 128},
        }
        model = get_method("grapheraser")(config).fit(tiny_split.train, tiny_split.valid)
        report = model.forget(user_deletion(tiny_split.train, users=["u2"]))
        assert "aggregator" in report.changed_parts
