"""Quarantine then repair: a quarantined model serves only from parts that never held the deleted
rows, and the repair gives bitwise what ``forget_many`` of the pending requests gives (CPU)."""

from datetime import datetime, timezone
from datetime import time as time_of_day

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from recunlearn.data import DeletionRequest
from recunlearn.errors import RecUnlearnError
from recunlearn.testing import FAST_TRAIN
from recunlearn.unlearn import Unlearner, get_method
from recunlearn.unlearn.quarantine import RepairPolicy

TRAIN = {**FAST_TRAIN, "max_epochs": 3}
CONFIGS = {
    "sisa": {"n_shards": 3, "train": TRAIN},
    "receraser": {
        "n_shards": 3,
        "train": TRAIN,
        "aggregator": {"kind": "attention", "epochs": 1, "batch_size": 512},
    },
    "grapheraser": {"n_shards": 3, "train": TRAIN, "aggregator": {"kind": "weighted"}},
}


def embeddings(split, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(split.train.n_users, 4)), rng.normal(size=(split.train.n_items, 4))


def fit(method, split, train=None):
    model = get_method(method)(CONFIGS[method])
    if method != "sisa":  # a fixed partition whatever the labels
        model.use_embeddings(*embeddings(split))
    return model.fit(split.train if train is None else train, split.valid)


def requests_for(model, split):
    """Two requests that leave at least one shard untouched: single rows of shard 0 (SISA spreads a
    user over every shard), or a user with one more pair of that user's shard."""
    train = model.train
    rows = np.flatnonzero(model.assignment == 0)
    if model.name == "sisa":
        return [
            DeletionRequest.from_rows(train, [rows[0]], request_id="a"),
            DeletionRequest.from_rows(train, [rows[1]], request_id="b"),
        ]
    user = train.users.ids[train.user[rows[0]]]
    other = rows[train.user[rows] != train.user[rows[0]]][0]
    return [
        DeletionRequest(users=[user], request_id="a"),
        DeletionRequest.from_rows(train, [other], request_id="b"),
    ]


def states(model):
    return [None if m is None else m.state_dict() for m in model.models]


def assert_same_model(a, b, test):
    for k, (x, y) in enumerate(zip(states(a), states(b))):
        assert (x is None) == (y is None), k
        if x is not None:
            assert all(torch.equal(x[n], y[n]) for n in x), f"shard {k}"
    ta, tb = a.aggregator.tensors(), b.aggregator.tensors()
    assert ta.keys() == tb.keys()
    for name in ta:  # NaN where a user has no validation rows: equal as arrays
        np.testing.assert_array_equal(ta[name].numpy(), tb[name].numpy())
    np.testing.assert_array_equal(
        a.score_index(test.user, test.item), b.score_index(test.user, test.item)
    )
    assert a.train.content_hash() == b.train.content_hash()


@pytest.mark.parametrize("method", sorted(CONFIGS))
def test_quarantined_scores_do_not_depend_on_the_quarantined_shards_rows(tiny_split, method):
    model = fit(method, tiny_split)
    request = requests_for(model, tiny_split)[0]
    shard = int(model.assignment[model._masks_of(request)[0]][0])
    # the same data, every label of that shard's rows flipped: a different shard model there
    flipped = tiny_split.train.label.copy()
    flipped[model.assignment == shard] = 1 - flipped[model.assignment == shard]
    other = fit(method, tiny_split, tiny_split.train.with_labels(flipped))
    np.testing.assert_array_equal(model.assignment, other.assignment)
    test = tiny_split.test
    assert not np.array_equal(
        model.score_index(test.user, test.item), other.score_index(test.user, test.item)
    )
    before = states(model)
    report = model.quarantine(request)
    other.quarantine(request)
    assert report.phase == "quarantine" and report.exact and report.seconds < 1.0
    assert report.quarantined_parts == model.quarantined_parts == [f"shard-{shard}"]
    assert [p.action for p in report.parts].count("quarantined") == 1
    np.testing.assert_array_equal(
        model.score_index(test.user, test.item), other.score_index(test.user, test.item)
    )
    np.testing.assert_array_equal(
        model.score_all(np.arange(5)), other.score_all(np.arange(5))
    )  # the plain average of the others, both ways of scoring
    for k in range(3):  # unaffected shards untouched, the quarantined one's weights gone
        if k == shard:
            assert model.models[k] is None
        else:
            assert all(
                torch.equal(before[k][n], model.models[k].state_dict()[n]) for n in before[k]
            )
    assert len(model.train) == len(tiny_split.train) - report.removed_rows
    assert model.quarantine(request).noop  # its rows already left the training data


@pytest.mark.parametrize("method", sorted(CONFIGS))
def test_repair_batches_the_pending_requests_and_equals_forget_many(tiny_split, method):
    model = fit(method, tiny_split)
    reference = fit(method, tiny_split)
    requests = requests_for(model, tiny_split)
    calls = []
    train_shards = model._train_shards
    model._train_shards = lambda shards: (calls.append(list(shards)), train_shards(shards))[1]
    for request in requests:
        model.quarantine(request)
    assert model.pending == ["a", "b"] and not calls
    with pytest.raises(RecUnlearnError, match="await repair"):
        model.forget(DeletionRequest.from_rows(model.train, [0]))
    quarantined = [int(p.split("-")[1]) for p in model.quarantined_parts]
    report = model.repair()
    assert calls == [quarantined], "each quarantined shard is retrained once, for every request"
    assert report.phase == "repair" and report.exact and report.details["requests"] == ["a", "b"]
    assert model.pending == [] and model.quarantined_parts == [] and model.repair() is None
    reference.forget_many(requests)
    assert_same_model(model, reference, tiny_split.test)


@pytest.mark.parametrize("method", ["receraser", "grapheraser"])
def test_save_load_repair_resumes_after_a_crash(tiny_split, method, tmp_path):
    model = fit(method, tiny_split)
    reference = fit(method, tiny_split)
    requests = requests_for(model, tiny_split)
    model.save(tmp_path / "before")
    model.quarantine(requests[0])
    model.save(tmp_path / "quarantined")
    before = load_file(str(tmp_path / "before" / "weights.safetensors"))
    after = load_file(str(tmp_path / "quarantined" / "weights.safetensors"))
    shard = model.quarantined_parts[0].replace("-", "")
    assert not any(n.startswith(shard + ".") for n in after), "no weights of a quarantined part"
    assert not any(n.startswith("aggregator.") for n in after), "nor of an aggregator fitted on it"
    kept = [n for n in before if n.startswith("shard") and not n.startswith(shard + ".")]
    assert kept and all(torch.equal(before[n], after[n]) for n in kept)
    record = (tmp_path / "quarantined" / "unlearner.json").read_text()
    named = [*requests[0].users, *(u for pair in requests[0].pairs for u in pair)]
    assert named and not any(f'"{u}"' in record for u in named), (
        "pending ids only, not what they name"
    )
    loaded = Unlearner.load(tmp_path / "quarantined")
    assert loaded.pending == model.pending == ["a"]
    assert loaded.quarantined_parts == model.quarantined_parts
    test = tiny_split.test
    np.testing.assert_array_equal(
        loaded.score_index(test.user, test.item), model.score_index(test.user, test.item)
    )
    loaded.quarantine(requests[1])  # arrives after the crash: batched into the resumed repair
    loaded.repair()
    reference.forget_many(requests)
    assert_same_model(loaded, reference, test)


def test_quarantine_without_a_fallback_refuses_to_leave_nothing_to_serve(tiny_split):
    model = get_method("sisa")({**CONFIGS["sisa"], "quarantine_fallback": "none"})
    model.fit(tiny_split.train, tiny_split.valid)
    user = model.train.users.ids[np.bincount(model.train.user).argmax()]
    hash_before = model.train.content_hash()
    with pytest.raises(RecUnlearnError, match="nothing to serve"):
        model.quarantine(DeletionRequest(users=[user]))  # SISA spreads a user over every shard
    assert model.pending == [] and model.train.content_hash() == hash_before


@pytest.mark.parametrize("method", ["sisa", "receraser", "grapheraser"])
def test_with_every_shard_set_aside_the_most_popular_remaining_items_are_served(
    method, tiny_split, tmp_path
):
    model, reference = fit(method, tiny_split), fit(method, tiny_split)
    train = model.train
    requests = [  # one row of each shard: together they set aside every shard
        DeletionRequest.from_rows(
            train, [np.flatnonzero(model.assignment == k)[0]], request_id=str(k)
        )
        for k in range(3)
    ]
    model.quarantine(requests[0])
    model.quarantine(requests[1])
    report = model.quarantine(requests[2])
    assert report.exact and report.details["serving"] == "popularity"
    assert model.quarantined_parts == ["shard-0", "shard-1", "shard-2"]
    left = model.train
    counts = np.bincount(left.item[left.label > 0], minlength=left.n_items)
    users = np.arange(left.n_users)
    scores = model.score_all(users)
    assert (scores == scores[0]).all(), "the same list for every user"
    np.testing.assert_array_equal(
        np.argsort(-scores[0], kind="stable"), np.argsort(-counts, kind="stable")
    )
    model.save(tmp_path / "all-aside")
    loaded = Unlearner.load(tmp_path / "all-aside")
    np.testing.assert_array_equal(loaded.score_all(users), scores)
    extra = DeletionRequest.from_rows(left, [0], request_id="late")  # refitted on the rows left
    loaded.quarantine(extra)
    assert loaded.score_all(users)[0, left.item[0]] <= scores[0, left.item[0]]
    loaded.repair()
    reference.forget_many([*requests, extra])
    assert_same_model(loaded, reference, tiny_split.test)


def test_retrain_quarantine_is_approximate_and_repair_is_exact_retraining(tiny_split):
    config = {"train": TRAIN}
    model = get_method("retrain")(config).fit(tiny_split.train, tiny_split.valid)
    reference = get_method("retrain")(config).fit(tiny_split.train, tiny_split.valid)
    weights = model.model.state_dict()["user_emb.weight"].clone()
    requests = [
        DeletionRequest(users=["u3"], request_id="a"),
        DeletionRequest.from_rows(tiny_split.train, [7], request_id="b"),
    ]
    for request in requests:
        report = model.quarantine(request)
        assert report.phase == "quarantine" and not report.exact
        assert report.details["approximate_method"] == "ifru"
    assert not torch.equal(weights, model.model.state_dict()["user_emb.weight"])
    assert len(model.pending) == 2 and model.quarantined_parts == []
    assert model.repair_due()  # the default policy: now
    report = model.repair()
    assert report.exact and report.phase == "repair"
    reference.forget_many(requests)
    for name, value in reference.model.state_dict().items():
        assert torch.equal(value, model.model.state_dict()[name]), name


def test_repair_policy():
    assert not RepairPolicy().due(0, None)
    assert RepairPolicy(when="now").due(1, None)
    after = RepairPolicy(when="after", after_requests=3)
    assert not after.due(2, None) and after.due(3, None)
    nightly = RepairPolicy(when="at", at=time_of_day(3, 0))
    stamp = lambda h, d=5: datetime(2026, 12, d, h, 0, tzinfo=timezone.utc).timestamp()  # noqa: E731
    assert not nightly.due(1, since=stamp(4), now=stamp(23))  # quarantined after today's 03:00
    assert nightly.due(1, since=stamp(4), now=stamp(3, 6))  # the next night
    assert nightly.due(1, since=stamp(1), now=stamp(3, 5))


def test_an_approximate_method_quarantines_by_forgetting(tiny_split):
    model = get_method("finetune")({"train": TRAIN}).fit(tiny_split.train, tiny_split.valid)
    report = model.quarantine(DeletionRequest(users=["u3"]))
    assert report.phase == "quarantine" and not report.exact and model.pending == []
    assert model.repair() is None


@pytest.mark.parametrize("kind", ["owner", "foldin", "weighted"])
def test_a_validation_only_quarantine_keeps_an_aggregator_that_needs_no_change(
    tiny_split, kind, tmp_path
):
    """Owner weights and fold-ins use no validation data: a request naming only validation rows
    leaves them serving, also once saved and loaded; the weighted aggregator was fitted on those
    rows, so it waits for the repair."""
    split = tiny_split
    method = get_method("receraser")({"n_shards": 3, "train": TRAIN, "aggregator": {"kind": kind}})
    method.use_embeddings(*embeddings(split))
    method.fit(split.train, split.valid)
    valid, known = split.valid, set(method.train.pair_keys.tolist())
    j = next(i for i in range(len(valid)) if valid.pair_keys[i] not in known)
    pair = (str(valid.users.ids[valid.user[j]]), str(valid.items.ids[valid.item[j]]))
    before = method.score_index(split.test.user, split.test.item)
    method.quarantine(DeletionRequest(pairs=[pair], request_id="v"))
    after = method.score_index(split.test.user, split.test.item)
    assert method.quarantined_parts == []
    assert np.array_equal(before, after) == (kind != "weighted")
    method.save(tmp_path / "pending")
    loaded = Unlearner.load(tmp_path / "pending")
    np.testing.assert_array_equal(loaded.score_index(split.test.user, split.test.item), after)


@pytest.mark.parametrize("method", ["receraser", "grapheraser"])
def test_a_repair_that_fails_in_the_aggregator_leaves_the_held_one_as_it_was(
    tiny_split, method, monkeypatch
):
    model, reference = fit(method, tiny_split), fit(method, tiny_split)
    requests = requests_for(model, tiny_split)
    model.quarantine(requests[0])
    held = model._aggregator_held
    before = {k: v.clone() for k, v in held.tensors().items()}
    refit = type(held).fit

    def refit_then_fail(self, *args, **kwargs):
        refit(self, *args, **kwargs)
        raise RuntimeError("injected failure")

    with monkeypatch.context() as patch:
        patch.setattr(type(held), "fit", refit_then_fail)
        with pytest.raises(RuntimeError, match="injected"):
            model.repair()
    assert model.quarantined_parts and model._aggregator_held is not None
    after = model._aggregator_held.tensors()
    assert after.keys() == before.keys()
    for name in before:
        np.testing.assert_array_equal(after[name].numpy(), before[name].numpy())
    model.repair()
    reference.forget_many(requests[:1])
    assert_same_model(model, reference, tiny_split.test)


def test_a_failed_quarantine_keeps_the_aggregator_and_holds_none(tiny_split, monkeypatch):
    from recunlearn.unlearn import quarantine

    model = fit("receraser", tiny_split)
    aggregator = model.aggregator

    def fail(config):
        raise RuntimeError("injected failure")

    with monkeypatch.context() as patch:
        patch.setattr(quarantine, "fallback_average", fail)
        with pytest.raises(RuntimeError, match="injected"):
            model.quarantine(requests_for(model, tiny_split)[0])
    assert model.aggregator is aggregator and getattr(model, "_aggregator_held", None) is None
    assert model.pending == [] and all(m is not None for m in model.models)
