"""APA and the LLM baselines: exact forgetting, the unlearning contract, persistence."""

import numpy as np
import pytest
import torch

from recunlearn.data import DeletionRequest
from recunlearn.errors import ConfigError, EmptyRequestError, RecUnlearnError, UnknownIdError
from recunlearn.models.llm.lora import adapter_tensors
from recunlearn.train.adapter import AdapterJob, init_adapter, train_adapter
from recunlearn.train.auc import roc_auc
from recunlearn.unlearn import Unlearner, available_methods, get_method
from recunlearn.unlearn.apa import APAConfig
from recunlearn.unlearn.combine import AdapterAttention, OutputAverage
from tests.llm.conftest import method_config, plain_peft_yes_no

LLM_METHODS = ["llm-retrain", "apa", "llm-sisa", "llm-receraser", "llm-grapheraser"]


@pytest.fixture(scope="module")
def fitted_apa(tiny_causal, sample_split):
    train, valid, _ = sample_split
    return get_method("apa")(method_config(tiny_causal, n_shards=2, neighbours=5)).fit(train, valid)


def test_methods_are_registered_for_samples():
    assert set(LLM_METHODS) <= set(available_methods("samples"))
    assert not set(LLM_METHODS) & set(available_methods("interactions"))


@pytest.mark.parametrize("shared", [False, True])
def test_forget_retrains_exactly_the_affected_adapter(shared, tiny_causal, sample_split):
    train, valid, test = sample_split
    apa = get_method("apa")(
        method_config(tiny_causal, n_shards=2, neighbours=5, shared_init=shared)
    ).fit(train, valid)
    assert apa.partition_info["sizes"] == [24, 24]  # balanced: ceil(n / K)
    before = [{k: v.clone() for k, v in a.items()} for a in apa.adapters]
    shard_ids = [set(train.ids[apa.assignment == k]) for k in range(2)]
    victim = sorted(shard_ids[1])[3]
    report = apa.forget(DeletionRequest(samples=[victim]))
    assert (
        report.details["retrained_adapters"] == [1]
        and report.removed_rows == 1
        and report.seconds > 0
    )
    assert [p.action for p in report.parts] == ["unchanged", "retrained"]
    assert all(torch.equal(before[0][k], apa.adapters[0][k]) for k in before[0])
    # from scratch: the shard's samples minus the victim, in their original order, with the same seed
    keep = np.array([s in shard_ids[1] and s != victim for s in train.ids])
    job = AdapterJob(
        1,
        apa.config.backbone,
        apa.config.lora,
        apa.config.train,
        apa.config.train.seed + 1,
        train.take(keep),
        valid,
        "cpu",
        init_seed=apa.config.train.seed if shared else None,
    )
    scratch = train_adapter(job)
    assert all(torch.equal(scratch.adapter[k], apa.adapters[1][k]) for k in scratch.adapter)
    assert not all(torch.equal(before[1][k], apa.adapters[1][k]) for k in before[1])
    assert np.array_equal(scratch.valid_logits, apa.valid_logits[1])  # attention cache refreshed
    assert report.parts[1].data_hash_after == train.take(keep).content_hash()


def test_validation_every_few_epochs_scores_the_same_epochs_as_every_epoch(
    tiny_causal, sample_split
):
    """eval_every=2 validates after epochs 2 and 3 (the last), with the very scores an every-epoch run
    gets there (validating draws nothing from the training's random streams), and keeps the best."""
    train, valid, _ = sample_split
    config = get_method("llm-retrain")(method_config(tiny_causal)).config
    runs = {}
    for every in (1, 2):
        settings = config.train.model_copy(
            update={"max_epochs": 3, "patience": 5, "eval_every": every}
        )
        runs[every] = train_adapter(
            AdapterJob(0, config.backbone, config.lora, settings, 0, train, valid, "cpu")
        )
    every_epoch, sparse = runs[1].info["valid_history"], runs[2].info["valid_history"]
    assert len(every_epoch) == 3 and sparse == every_epoch[1:]
    assert runs[2].info["epochs"] == 3 and runs[2].info["best_epoch"] == 2 + int(np.argmax(sparse))


@pytest.mark.parametrize("shared", [True, False])
def test_adapters_share_their_initialisation_only_when_asked(shared, tiny_encoder, sample_split):
    train, valid, _ = sample_split
    apa = get_method("apa")(method_config(tiny_encoder, n_shards=3, shared_init=shared))
    assert not get_method("apa")({}).config.shared_init  # off by default (docs/apa.md)
    apa.train, apa.valid = train, valid
    apa._setup()
    apa.assignment = np.arange(len(train)) % 3
    jobs = [apa.adapter_job(k) for k in range(3)]
    assert [j.seed for j in jobs] == [0, 1, 2]  # data order and dropout stay per shard
    starts = [adapter_tensors(init_adapter(job)[0]) for job in jobs]
    a_keys = [k for k in starts[0] if k.endswith(".A")]
    assert a_keys and all(not torch.all(starts[0][k] == 0) for k in a_keys)
    same = [all(torch.equal(starts[0][k], s[k]) for k in a_keys) for s in starts[1:]]
    assert same == [shared, shared]
    for s in starts:  # B and the encoder head start at zero either way
        assert all(torch.all(v == 0) for k, v in s.items() if not k.endswith(".A"))
    # shared: the start is drawn with the method's seed (what adapter 0 alone gets), not the shard's
    alone = AdapterJob(
        0, apa.config.backbone, apa.config.lora, apa.config.train, 0, train, valid, "cpu"
    )
    assert (
        all(torch.equal(adapter_tensors(init_adapter(alone)[0])[k], starts[2][k]) for k in a_keys)
        == shared
    )


def test_contract_noop_unknown_empty_and_users(fitted_apa, tiny_causal, sample_split):
    train, valid, _ = sample_split
    apa = get_method("apa")(fitted_apa.config).fit(
        train, valid
    )  # its own: forgetting changes the scorer in place
    victim = train.ids[0]
    first = apa.forget(DeletionRequest(samples=[victim]))
    again = apa.forget(DeletionRequest(samples=[victim]))
    assert not first.noop and again.noop and again.removed_rows == 0
    with pytest.raises(UnknownIdError):
        apa.forget(DeletionRequest(samples=["no-such-sample"]))
    with pytest.raises(UnknownIdError):
        apa.forget(DeletionRequest(users=["no-such-user"]))
    with pytest.raises(
        UnknownIdError, match="no training or validation prompt ever mentioned: 'no-such-item'"
    ):
        apa.forget(DeletionRequest(items=["no-such-item"]))
    with pytest.raises(UnknownIdError, match="no-such-item"):
        apa.forget(DeletionRequest(pairs=[(apa.train.user[0], "no-such-item")]))
    with pytest.raises(EmptyRequestError):
        DeletionRequest()
    user = apa.train.user[0]
    report = apa.forget(DeletionRequest(users=[user]))
    assert report.removed_rows == int((train.user == user).sum() - (train.user[0] == user))
    assert user not in set(apa.train.user)
    with pytest.raises(RecUnlearnError, match="every training sample"):
        apa.forget(DeletionRequest(samples=apa.train.ids.tolist()))


def test_attention_weights_and_ablations(fitted_apa, sample_split):
    _, valid, test = sample_split
    for weighting in ("attention", "average", "major", "semantic"):
        fitted_apa.set_options(weighting=weighting)
        w = fitted_apa.weights(test)
        assert w.shape == (len(test), 2) and np.allclose(w.sum(1), 1.0, atol=1e-6)
        if weighting == "average":
            assert np.allclose(w, 0.5)
        if weighting == "major":
            assert set(np.unique(w)) <= {0.0, 1.0}
    with pytest.raises(ConfigError, match="tau_grid=None"):
        fitted_apa.set_options(weighting="attention", tau=0.0)  # tau is chosen from the grid
    fitted_apa.set_options(weighting="attention", tau=0.0, tau_grid=None)
    assert np.allclose(fitted_apa.weights(test), 0.5)  # tau = 0: equal weights
    fitted_apa.set_options(tau=1000.0)
    # by hand for one sample: softmax(-tau * mean error of each adapter on its nearest validation prompts)
    query = fitted_apa.representations(test.take([0]))
    rep = fitted_apa.representations(valid)
    sim = (rep / np.linalg.norm(rep, axis=1, keepdims=True)) @ (query[0] / np.linalg.norm(query[0]))
    near = np.argsort(-sim)[:5]
    error = np.abs(1 / (1 + np.exp(-fitted_apa.valid_logits[:, near])) - valid.label[near]).mean(1)
    expected = np.exp(-1000 * (error - error.min()))
    assert np.allclose(fitted_apa.weights(test.take([0]))[0], expected / expected.sum(), atol=1e-4)
    with pytest.raises(ConfigError):
        fitted_apa.set_options(n_shards=3)
    fitted_apa.set_options(tau_grid=APAConfig.model_fields["tau_grid"].default)


@pytest.mark.parametrize("holdout", ["user", "sample"])
def test_tau_is_chosen_on_validation_with_each_prompt_held_out(fitted_apa, sample_split, holdout):
    """Each validation prompt is weighted by validation neighbours it is held out from (never itself:
    its own error would give its label away; with 'user', none of its user's prompts); the tau whose
    mixture of cached probabilities ranks best wins."""
    _, valid, _ = sample_split
    assert len(set(valid.user.tolist())) > 1
    fitted_apa.set_options(weighting="attention", tau_grid=(0.0, 10.0, 1000.0), tau_holdout=holdout)
    assert set(fitted_apa.tau_selection) == {"0", "10", "1000"}
    assert fitted_apa.tau_selection[f"{fitted_apa.tau_:g}"] == max(
        fitted_apa.tau_selection.values()
    )
    rep = fitted_apa.representations(valid)
    rep = rep / np.linalg.norm(rep, axis=1, keepdims=True)
    sim = rep @ rep.T
    held_out = np.eye(len(valid), dtype=bool)
    if holdout == "user":
        held_out |= valid.user[:, None] == valid.user[None, :]
    sim[held_out] = -np.inf
    probs = 1 / (1 + np.exp(-fitted_apa.valid_logits.astype(np.float64)))
    errors = np.abs(probs - valid.label)  # K x valid
    error = np.stack(
        [errors[:, [j for j in np.argsort(-row)[:5] if np.isfinite(row[j])]].mean(1) for row in sim]
    )
    w = np.exp(-10 * (error - error.min(1, keepdims=True)))
    mixed = ((w / w.sum(1, keepdims=True)) * probs.T).sum(1)
    assert fitted_apa.tau_selection["10"] == pytest.approx(roc_auc(valid.label, mixed), abs=1e-6)
    fitted_apa.set_options(tau_grid=(7.0,))
    assert fitted_apa.tau_ == 7.0  # a one-value grid fixes tau
    fitted_apa.set_options(tau_grid=APAConfig.model_fields["tau_grid"].default, tau_holdout="user")


def test_forget_chooses_tau_again_from_the_retrained_adapters(tiny_causal, sample_split, tmp_path):
    train, valid, _ = sample_split
    apa = get_method("apa")(
        method_config(tiny_causal, n_shards=2, neighbours=5, tau_grid=(0.0, 3.0, 30.0))
    ).fit(train, valid)
    before = dict(apa.tau_selection)
    report = apa.forget(DeletionRequest(samples=[train.ids[0]]))
    assert (
        report.details["tau"] == apa.tau_ and apa.tau_selection != before
    )  # from the retrained adapter's cache
    loaded = get_method("apa").load(apa.save(tmp_path / "apa"))
    assert loaded.tau_selection == pytest.approx(apa.tau_selection) and loaded.tau_ == apa.tau_


def test_a_failed_forget_leaves_adapters_caches_and_scores_as_they_were(
    tiny_causal, sample_split, monkeypatch
):
    """A forget that fails after the retrained adapter is in the mixture (here: refreshing the
    attention cache) puts everything back, the mixture's weights included, and can be retried."""
    train, valid, test = sample_split
    apa = get_method("apa")(
        method_config(tiny_causal, n_shards=2, neighbours=5, tau_grid=(0.0, 3.0))
    ).fit(train, valid)
    scores, tau, errors = apa.score(test), apa.tau_, apa.combiner.valid_errors.clone()
    adapters, logits = (
        [{k: v.clone() for k, v in a.items()} for a in apa.adapters],
        apa.valid_logits.copy(),
    )
    refresh = AdapterAttention.fit

    def refresh_then_fail(self, method):
        refresh(self, method)
        raise RuntimeError("injected failure")

    request = DeletionRequest(samples=[train.ids[0]])
    with monkeypatch.context() as patch:
        patch.setattr(AdapterAttention, "fit", refresh_then_fail)
        with pytest.raises(RuntimeError, match="injected"):
            apa.forget(request)
    assert apa.train is train and apa.tau_ == tau and torch.equal(apa.combiner.valid_errors, errors)
    assert np.array_equal(apa.valid_logits, logits)
    assert all(torch.equal(a[k], b[k]) for a, b in zip(apa.adapters, adapters) for k in a)
    np.testing.assert_array_equal(apa.score(test), scores)
    assert apa.forget(request).removed_rows == 1


@pytest.mark.parametrize("name", LLM_METHODS)
def test_every_method_fits_scores_forgets_and_round_trips(
    name, tiny_causal, sample_split, tmp_path
):
    train, valid, test = sample_split
    extra = {} if name == "llm-retrain" else {"n_shards": 2}
    method = get_method(name)(method_config(tiny_causal, **extra)).fit(train, valid)
    scores = method.score(test)
    assert scores.shape == (len(test),) and np.all((scores > 0) & (scores < 1))
    victim = train.ids[5]
    shard = int(method.assignment[5])
    report = method.forget(DeletionRequest(samples=[victim]))
    assert report.details["retrained_adapters"] == [shard] and victim not in set(method.train.ids)
    method.save(tmp_path / name)
    assert (tmp_path / name / "adapters" / "adapter-0" / "adapter_model.safetensors").is_file()
    back = Unlearner.load(tmp_path / name)  # the base class dispatches on the stored method
    assert type(back) is type(method) and len(back.train) == len(train) - 1
    assert np.allclose(back.score(test), method.score(test), atol=1e-6)
    assert back.forget(DeletionRequest(samples=[victim])).noop
    assert not hasattr(method, "score_index"), "the collaborative query API is CFUnlearner's"


def test_saved_adapters_load_in_plain_peft(fitted_apa, sample_split, tmp_path):
    """Each saved adapter names a loadable model folder (not our alias) and its keys fit that model.
    (Compared with the reloaded APA: an earlier test retrains adapters in fitted_apa's shared scorer.)"""
    test = sample_split[2]
    back = Unlearner.load(fitted_apa.save(tmp_path / "apa"))
    peft = plain_peft_yes_no(
        tmp_path / "apa" / "adapters" / "adapter-0", back.backbone, back._tokenize(test)
    )
    assert np.abs(peft - back.adapter_logits(test)[0]).max() < 1e-5


def test_sisa_averages_probabilities_and_skips_empty_adapters(tiny_causal, sample_split, tmp_path):
    train, valid, test = sample_split
    sisa = get_method("llm-sisa")(method_config(tiny_causal, n_shards=2)).fit(train, valid)
    per_adapter = 1 / (1 + np.exp(-sisa.adapter_logits(test).astype(np.float64)))
    assert np.allclose(sisa.score(test), per_adapter.mean(0), atol=1e-6)
    sisa.save(tmp_path / "sisa")
    emptied = sisa.forget(DeletionRequest(samples=sisa.train.ids[sisa.assignment == 1].tolist()))
    assert emptied.details["empty_adapters"] == [1] and sisa.adapters[1] is None
    only = 1 / (1 + np.exp(-sisa.adapter_logits(test)[0].astype(np.float64)))
    assert np.allclose(sisa.score(test), only, atol=1e-6)
    sisa.save(tmp_path / "sisa")  # over the folder that still held adapter 1
    back = Unlearner.load(tmp_path / "sisa")
    assert back.adapters[1] is None and np.allclose(back.score(test), only, atol=1e-6), (
        "the forgotten adapter stays gone"
    )


def test_apa_on_an_encoder_backbone_with_heads(tiny_encoder, sample_split):
    train, valid, test = sample_split
    apa = get_method("apa")(method_config(tiny_encoder, n_shards=2, aggregation="D")).fit(
        train, valid
    )
    assert apa.backbone.kind == "encoder" and "head.weight" in apa.adapters[0]
    scores = apa.score(test)
    one_hot = apa.set_options(weighting="major").score(test)
    assert scores.shape == one_hot.shape == (len(test),)
    with pytest.raises(RecUnlearnError):
        apa.fit(train.take([0]), valid)  # fewer samples than adapters
    blind = get_method("apa")(method_config(tiny_encoder, n_shards=2, weighting="average")).fit(
        train, None
    )
    with pytest.raises(ConfigError, match="needs validation samples"):
        blind.set_options(weighting="attention")
    assert blind.config.weighting == "average" and blind.score(test).shape == (len(test),), (
        "still usable"
    )


def test_validation_logits_use_the_held_out_weights(fitted_apa):
    """At tau 0 the held-out weights are equal, so the pass is the 'average' weighting's."""
    fitted_apa.set_options(aggregation="ND", weighting="attention")
    equal = fitted_apa.validation_logits(0.0)
    assert equal.shape == (len(fitted_apa.valid),)
    fitted_apa.set_options(weighting="average")
    assert np.allclose(
        equal,
        fitted_apa._pass(fitted_apa._valid_tokens, weights=fitted_apa.weights(fitted_apa.valid)),
        atol=1e-5,
    )
    fitted_apa.set_options(weighting="attention")


def test_random_partition_ablation_trains_sisas_adapters(tiny_causal, sample_split):
    """partition='random' gives SISA's shards and so SISA's very adapters (same seeds): averaging their
    outputs is SISA's score, while APA still mixes them in one pass."""
    train, valid, test = sample_split
    apa = get_method("apa")(
        method_config(tiny_causal, n_shards=2, neighbours=5, partition="random")
    ).fit(train, valid)
    sisa = get_method("llm-sisa")(method_config(tiny_causal, n_shards=2)).fit(train, valid)
    assert np.array_equal(apa.assignment, sisa.assignment)
    assert all(torch.equal(a[k], b[k]) for a, b in zip(apa.adapters, sisa.adapters) for k in a)
    assert np.allclose(
        OutputAverage().logits(apa, apa._tokenize(test), test),
        sisa.combiner.logits(sisa, sisa._tokenize(test), test),
    )
    assert apa.combiner.centres.shape == (2, apa.representations(train).shape[1])
    k0 = apa.assignment == 0
    assert np.allclose(
        apa.combiner.centres[0], apa.representations(train.take(k0)).mean(0), atol=1e-6
    )
    assert (
        np.isfinite(apa.score(test)).all()
        and np.isfinite(apa.set_options(weighting="semantic").score(test)).all()
    )


def test_a_deleted_users_validation_samples_leave_with_every_cache_built_from_them(
    tiny_causal, sample_split, tmp_path, monkeypatch
):
    """Forgetting a user drops their validation prompts too (they hold the user's history), and APA's
    attention cache is what it would be computed from the remaining ones; a validation sample alone
    is forgotten without retraining; a failed forget puts the validation data back."""
    from recunlearn.unlearn.combine import unit_rows

    train, valid, test = sample_split
    apa = get_method("apa")(
        method_config(tiny_causal, n_shards=2, neighbours=5, tau_grid=(0.0, 3.0))
    ).fit(train, valid)
    user = next(u for u in valid.user.tolist() if u in set(train.user.tolist()))
    theirs = int((valid.user == user).sum())

    refresh = AdapterAttention.fit

    def fail(self, method):
        refresh(self, method)
        raise RuntimeError("injected failure")

    with monkeypatch.context() as patch:
        patch.setattr(AdapterAttention, "fit", fail)
        with pytest.raises(RuntimeError, match="injected"):
            apa.forget(DeletionRequest(users=[user]))
    assert (
        apa.valid is valid
        and apa.valid_logits.shape == (2, len(valid))
        and len(apa.valid_repr) == len(valid)
    )

    report = apa.forget(DeletionRequest(users=[user]))
    assert report.removed_valid_rows == theirs > 0 and user not in set(apa.valid.user.tolist())
    assert (
        apa.valid_logits.shape == (2, len(valid) - theirs) == tuple(apa.combiner.valid_errors.shape)
    )
    np.testing.assert_allclose(apa.valid_repr, unit_rows(apa.representations(apa.valid)), atol=1e-5)
    for k in range(
        2
    ):  # each adapter's cached validation logits: its own pass over the remaining prompts
        np.testing.assert_allclose(
            apa.valid_logits[k], apa._pass(apa._valid_tokens, single=k), atol=1e-5
        )

    sample = apa.valid.ids[0]
    adapters = [{k: v.clone() for k, v in a.items()} for a in apa.adapters]
    alone = apa.forget(DeletionRequest(samples=[sample]))
    assert not alone.noop and alone.removed_rows == 0 and alone.removed_valid_rows == 1
    assert alone.details["retrained_adapters"] == [] and sample not in set(apa.valid.ids.tolist())
    assert all(torch.equal(a[k], b[k]) for a, b in zip(apa.adapters, adapters) for k in a)
    assert apa.forget(DeletionRequest(samples=[sample])).noop
    loaded = get_method("apa").load(apa.save(tmp_path / "apa"))
    assert loaded.valid.content_hash() == apa.valid.content_hash()
    np.testing.assert_allclose(loaded.score(test), apa.score(test), atol=1e-6)


def test_forgetting_every_validation_sample_is_refused_and_a_batch_counts_each_sample_once(
    tiny_causal, sample_split
):
    """Validation data of one class (LLM training accepts it) may lose rows but not all of them: APA's
    attention would average over no neighbours. In a batch, a sample two requests name is the first's."""
    train, valid, _ = sample_split
    liked = valid.take(valid.label > 0)
    apa = get_method("apa")(method_config(tiny_causal, n_shards=2, neighbours=5)).fit(train, liked)
    with pytest.raises(RecUnlearnError, match="no rows"):
        apa.forget(DeletionRequest(samples=liked.ids.tolist()))
    assert apa.valid is liked and apa.valid_logits.shape == (2, len(liked))
    user = next(u for u in liked.user.tolist() if u in set(train.user.tolist()))
    first, second = apa.forget_many([DeletionRequest(users=[user]), DeletionRequest(users=[user])])
    assert first.removed_valid_rows == int((liked.user == user).sum()) and first.removed_rows > 0
    assert second.noop and second.removed_rows == second.removed_valid_rows == 0


def test_the_attention_reads_the_options_set_after_fit_without_validation_samples(
    tiny_causal, sample_split
):
    """The attention reads its settings from the method's config, so ``set_options`` reaches it even
    where there is no validation data to refit on."""
    train, _, _ = sample_split
    apa = get_method("apa")(
        method_config(tiny_causal, n_shards=2, weighting="semantic", tau_grid=None)
    ).fit(train)
    apa.set_options(tau=5.0)
    assert apa.tau_ == 5.0 and apa.combiner.tau_ == 5.0
