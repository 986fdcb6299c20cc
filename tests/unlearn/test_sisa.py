import numpy as np
import pytest
import torch

from recunlearn.data import DeletionRequest, user_deletion
from recunlearn.errors import ConfigError
from recunlearn.testing import FAST_TRAIN, UnlearnerConformance
from recunlearn.unlearn import get_method
from recunlearn.unlearn.executors import train_shard


class TestSISA(UnlearnerConformance):
    method = "sisa"
    config = {"n_shards": 3, "train": FAST_TRAIN}

    def test_exactness_bitwise(self, tiny_split):
        """Retrained shards equal from-scratch training on their data minus the removed rows; others untouched."""
        model = self.fresh(tiny_split)
        before = [{k: v.clone() for k, v in m.state_dict().items()} for m in model.models]
        old_shard_data = [model.shard_data(k) for k in range(3)]
        request = user_deletion(tiny_split.train, users=["u5"])
        mask = request.rows(model.train)
        hit = set(np.unique(model.assignment[mask]).tolist())
        report = model.forget(request)
        assert set(report.details["retrained_shards"]) == hit and 0 < len(hit)
        for k in range(3):
            state = model.models[k].state_dict()
            if k in hit:
                old = old_shard_data[k]
                expected_data = old.drop(request.rows(old))
                assert model.shard_data(k).content_hash() == expected_data.content_hash()
                scratch = train_shard(model.shard_job(k))
                for name, value in state.items():
                    assert torch.equal(value.cpu(), scratch.state[name]), f"shard {k} {name}"
                assert report.parts[k].action == "retrained"
                assert report.parts[k].data_hash_before == old.content_hash()
                assert report.parts[k].data_hash_after == expected_data.content_hash()
            else:
                for name, value in state.items():
                    assert torch.equal(value, before[k][name]), f"untouched shard {k} changed"
                assert report.parts[k].action == "unchanged"

    def test_forget_many_retrains_each_shard_once(self, tiny_split):
        one_by_one = self.fresh(tiny_split)
        batched = self.fresh(tiny_split)
        train = tiny_split.train
        requests = [DeletionRequest.from_rows(train, [r]) for r in range(0, 40, 4)]
        calls = []
        original = batched._train_shards
        batched._train_shards = lambda shards: (calls.append(list(shards)), original(shards))[1]
        reports = batched.forget_many(requests)
        assert len(calls) == 1 and len(calls[0]) == len(set(calls[0]))
        assert [r.request_id for r in reports] == [q.request_id for q in requests]
        for request in requests:
            one_by_one.forget(request)
        test = tiny_split.test
        np.testing.assert_array_equal(
            batched.score_index(test.user, test.item), one_by_one.score_index(test.user, test.item)
        )

    def test_partition_is_balanced_and_seeded(self, tiny_split):
        a = get_method("sisa")(self.config)
        a.train = tiny_split.train
        sizes = np.bincount(a._partition(), minlength=3)
        assert sizes.max() - sizes.min() <= 1
        b = get_method("sisa")(self.config)
        b.train = tiny_split.train
        np.testing.assert_array_equal(a._partition(), b._partition())

    def test_shard_learning_rate_scales_with_the_number_of_shards(self, fitted):
        """'scaled' trains each shard at K times the full model's rate; a number is used as given; the
        rate used is what the shard's job (and so an exactness check from scratch) trains with."""
        assert fitted.shard_job(0).train_config.lr == FAST_TRAIN["lr"] * 3
        fixed = get_method("sisa")({**self.config, "shard_lr": 0.002})
        fixed.train, fixed.valid, fixed.assignment = fitted.train, fitted.valid, fitted.assignment
        assert fixed.shard_job(1).train_config.lr == 0.002
        assert fixed.shard_job(1).train_config.seed == fitted.shard_job(1).train_config.seed
        for bad in (0, -0.01):  # 0 trained nothing, silently; a negative rate failed deep in torch
            with pytest.raises(ConfigError, match="shard_lr"):
                get_method("sisa")({**self.config, "shard_lr": bad})


def test_a_batch_drops_each_requests_validation_rows_once(tiny_split):
    """forget_many retrains once for the batch; each report counts the validation rows its request
    was the first to name, a validation-only request included."""
    train, valid = tiny_split.train, tiny_split.valid
    model = get_method("sisa")({"n_shards": 3, "train": FAST_TRAIN}).fit(train, valid)
    row = int(
        np.flatnonzero(
            ~np.isin(valid.pair_keys, train.pair_keys)
            & (valid.user != valid.users.index(["u2"])[0])
        )[0]
    )
    pair = (str(valid.users.ids[valid.user[row]]), str(valid.items.ids[valid.item[row]]))
    requests = [
        user_deletion(train, users=["u2"]),
        DeletionRequest(pairs=[pair]),
        user_deletion(train, users=["u2"]),
    ]
    first, second, third = model.forget_many(requests)
    u2 = int((valid.users.ids[valid.user] == "u2").sum())
    assert (
        first.removed_valid_rows == u2 > 0
        and second.removed_valid_rows == 1
        and second.removed_rows == 0
    )
    assert third.noop and len(model.valid) == len(valid) - u2 - 1
    assert first.details["batched_with"] == 3 and pair in second.removed_pairs


def test_by_user_a_user_is_quarantined_in_one_shard_and_the_repair_is_forget(tiny_split):
    """partition = "user": a user's rows lie in one shard, so quarantine sets that shard alone aside
    (random shards refuse: the user is in every one); the repair equals forget, and the retrained
    shard equals training from scratch on its remaining rows."""
    config = {"n_shards": 3, "partition": "user", "train": FAST_TRAIN}
    train, valid = tiny_split.train, tiny_split.valid
    model = get_method("sisa")(config).fit(train, valid)
    reference = get_method("sisa")(config).fit(train, valid)
    for user in range(train.n_users):
        assert len(np.unique(model.assignment[train.user == user])) <= 1
    user = str(train.users.ids[np.bincount(train.user).argmax()])
    shard = int(model.assignment[train.user == train.users.index([user])[0]][0])
    report = model.quarantine(DeletionRequest(users=[user], request_id="a"))
    assert report.exact and model.quarantined_parts == [f"shard-{shard}"]
    model.repair()
    reference.forget(DeletionRequest(users=[user], request_id="a"))
    scratch = train_shard(model.shard_job(shard))
    for k in range(3):
        state, expected = model.models[k].state_dict(), reference.models[k].state_dict()
        assert all(torch.equal(state[n], expected[n]) for n in state), f"shard {k}"
    assert all(
        torch.equal(v.cpu(), scratch.state[n]) for n, v in model.models[shard].state_dict().items()
    )
    test = tiny_split.test
    np.testing.assert_array_equal(
        model.score_index(test.user, test.item), reference.score_index(test.user, test.item)
    )
    assert get_method("sisa")({"n_shards": 3}).config.partition == "random", "SISA's by default"
