import numpy as np
import pytest
import torch

from recunlearn.data import DeletionRequest, user_deletion
from recunlearn.errors import RecUnlearnError
from recunlearn.testing import FAST_TRAIN, UnlearnerConformance
from recunlearn.unlearn import get_method
from recunlearn.unlearn.executors import train_shard

ATTENTION = {"kind": "attention", "epochs": 3, "batch_size": 128}


def assert_exact_after_forget(model, request, n_shards):
    """Retrained shards equal from-scratch training on their remaining rows; others are untouched;
    the aggregator equals one fitted from scratch on the remaining rows and the new shards."""
    before = [
        None if m is None else {k: v.clone() for k, v in m.state_dict().items()}
        for m in model.models
    ]
    old_data = [model.shard_data(k) for k in range(n_shards)]
    mask = request.rows(model.train)
    hit = set(np.unique(model.assignment[mask]).tolist())
    report = model.forget(request)
    assert set(report.details["retrained_shards"]) == hit and hit
    for k in range(n_shards):
        part = report.parts[k]
        assert part.data_hash_before == old_data[k].content_hash()
        if k in hit:
            expected = old_data[k].drop(request.rows(old_data[k]))
            assert part.action == "retrained" and part.data_hash_after == expected.content_hash()
            assert model.shard_data(k).content_hash() == expected.content_hash()
            if len(expected):
                scratch = train_shard(model.shard_job(k))
                for name, value in model.models[k].state_dict().items():
                    assert torch.equal(value.cpu(), scratch.state[name]), f"shard {k} {name}"
            else:
                assert model.models[k] is None
        else:
            assert part.action == "unchanged" and part.data_hash_after == part.data_hash_before
            for name, value in model.models[k].state_dict().items():
                assert torch.equal(value, before[k][name]), f"untouched shard {k} changed"
    return report


def assert_aggregator_refit_from_scratch(model):
    from recunlearn.unlearn.aggregate import build_aggregator

    scratch = build_aggregator(model.config.aggregator)
    scratch.fit(model.models, model.train, model.valid, range(model.config.n_shards))
    for name, value in model.aggregator.tensors().items():
        torch.testing.assert_close(
            value,
            scratch.tensors()[name],
            rtol=0,
            atol=0,
            equal_nan=True,
            msg=f"aggregator {name} differs from a refit from scratch",
        )


class TestRecEraser(UnlearnerConformance):
    method = "receraser"
    config = {"n_shards": 3, "train": FAST_TRAIN, "aggregator": ATTENTION}

    def test_user_partition_keeps_users_whole_and_respects_the_cap(self, fitted):
        train = fitted.train
        shards_per_user = [
            len(np.unique(fitted.assignment[train.user == u])) for u in np.unique(train.user)
        ]
        assert max(shards_per_user) == 1
        sizes = np.bincount(fitted.assignment, minlength=3)
        biggest_user = np.bincount(train.user).max()
        assert sizes.max() < 1.2 * len(train) / 3 + biggest_user
        assert fitted.partition_info["sizes"] == sizes.tolist()

    def test_forgetting_a_user_retrains_one_shard_and_the_aggregator_exactly(self, tiny_split):
        model = self.fresh(tiny_split)
        report = assert_exact_after_forget(model, user_deletion(tiny_split.train, users=["u5"]), 3)
        assert len(report.details["retrained_shards"]) == 1
        aggregator = report.parts[-1]
        assert aggregator.part == "aggregator" and aggregator.action == "retrained"
        assert aggregator.data_hash_after == model.train.content_hash()
        assert model.aggregator_info["training_rows"] == len(model.train)
        assert_aggregator_refit_from_scratch(model)

    @pytest.mark.parametrize("partition", ["item", "interaction"])
    def test_other_partitions_are_exact_and_deterministic(self, tiny_split, partition):
        config = {**self.config, "partition": partition, "aggregator": {"kind": "average"}}
        a = get_method("receraser")(config).fit(tiny_split.train, tiny_split.valid)
        b = get_method("receraser")(config).fit(tiny_split.train, tiny_split.valid)
        np.testing.assert_array_equal(a.assignment, b.assignment)
        if partition == "item":
            train = a.train
            assert (
                max(len(np.unique(a.assignment[train.item == i])) for i in np.unique(train.item))
                == 1
            )
        request = DeletionRequest.from_rows(tiny_split.train, [0, 7, 30])
        assert_exact_after_forget(a, request, 3)

    def test_given_embeddings_are_used(self, tiny_split):
        train = tiny_split.train
        rng = np.random.default_rng(0)
        users, items = rng.normal(size=(train.n_users, 4)), rng.normal(size=(train.n_items, 4))
        model = get_method("receraser")({**self.config, "aggregator": {"kind": "average"}})
        model.use_embeddings(users, items).fit(train, tiny_split.valid)
        from recunlearn.unlearn.partition import receraser_partition

        expected = receraser_partition(users, items, train.user, train.item, 3, "user", 0, 10, 1.2)
        np.testing.assert_array_equal(model.assignment, expected.assignment)
        with pytest.raises(RecUnlearnError, match="given embeddings"):
            get_method("receraser")(self.config).use_embeddings(users[:3], items).fit(
                train, tiny_split.valid
            )

    def test_weighted_aggregator_refreshes_only_changed_shards_and_stays_exact(self, tiny_split):
        config = {**self.config, "aggregator": {"kind": "weighted", "tau": 5.0}}
        model = get_method("receraser")(config).fit(tiny_split.train, tiny_split.valid)
        train, valid = tiny_split.train, tiny_split.valid
        u7 = train.users.index(["u7"])[0]
        item = int(
            train.item[train.user == u7][0]
        )  # one training pair of u7's: no validation row changes
        pair = DeletionRequest(pairs=[("u7", str(train.items.ids[item]))])
        assert not pair.rows(valid).any()
        report = assert_exact_after_forget(model, pair, 3)
        assert model.aggregator_info["changed"] == report.details["retrained_shards"]
        assert_aggregator_refit_from_scratch(model)
        assert user_deletion(train, users=["u7"]).rows(valid).any()
        assert_exact_after_forget(model, user_deletion(train, users=["u7"]), 3)
        assert model.aggregator_info["changed"] == [0, 1, 2], (
            "u7's validation rows left every shard's errors"
        )
        assert_aggregator_refit_from_scratch(model)


def test_a_validation_only_deletion_refits_a_weighted_aggregator_and_keeps_the_shards(tiny_split):
    train, valid = tiny_split.train, tiny_split.valid
    model = get_method("receraser")(
        {"n_shards": 3, "train": FAST_TRAIN, "aggregator": {"kind": "weighted", "tau": 5.0}}
    ).fit(train, valid)
    weights = [{k: v.clone() for k, v in m.state_dict().items()} for m in model.models]
    row = int(np.flatnonzero(~np.isin(valid.pair_keys, train.pair_keys))[0])
    report = model.forget(
        DeletionRequest(
            pairs=[(str(valid.users.ids[valid.user[row]]), str(valid.items.ids[valid.item[row]]))]
        )
    )
    assert report.removed_rows == 0 and report.removed_valid_rows == 1
    assert report.changed_parts == ["aggregator"] and model.aggregator_info["changed"] == [0, 1, 2]
    assert all(
        torch.equal(m.state_dict()[k], w[k]) for m, w in zip(model.models, weights) for k in w
    )
    assert_aggregator_refit_from_scratch(model)


@pytest.mark.realdata
def test_attention_aggregator_refits_bitwise_on_two_threads(ml100k):
    """Its pairs' rows were gathered by advanced indexing, whose backward adds repeated rows in a
    varying order on several CPU threads: refits of one aggregator on ML-100K differed."""
    from recunlearn.data import ifru_protocol
    from recunlearn.unlearn.aggregate import build_aggregator

    split = ifru_protocol(ml100k)
    model = get_method("receraser")({"n_shards": 3, "train": {"max_epochs": 2}}).fit(
        split.train, split.valid
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        fits = []
        for _ in range(3):
            aggregator = build_aggregator(model.config.aggregator)
            aggregator.fit(model.models, model.train, model.valid, range(3))
            fits.append(aggregator.tensors())
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(fits[0][k], other[k]) for other in fits[1:] for k in fits[0])
