"""Quarantine and repair on the language-model recommender: a quarantined adapter gets zero attention
(APA) or is left out of the average (llm-sisa), and the repair equals ``forget_many``."""

import numpy as np
import pytest
import torch

from recunlearn.data import DeletionRequest
from recunlearn.unlearn import Unlearner, get_method
from recunlearn.unlearn.combine import AdapterAttention
from tests.llm.conftest import method_config


def fit(method, backbone, split):
    train, valid, _ = split
    extra = {"neighbours": 5} if method == "apa" else {}
    return get_method(method)(method_config(backbone, n_shards=2, **extra)).fit(train, valid)


@pytest.mark.parametrize("method", ["apa", "llm-sisa"])
def test_quarantine_sets_the_adapter_aside_and_repair_equals_forget_many(
    method, tiny_causal, sample_split, tmp_path
):
    train, _, test = sample_split
    model = fit(method, tiny_causal, sample_split)
    reference = fit(method, tiny_causal, sample_split)
    shard1 = train.ids[model.assignment == 1]
    requests = [DeletionRequest(samples=[s], request_id=s) for s in shard1[:2]]
    kept = {k: v.clone() for k, v in model.adapters[0].items()}

    # another model whose adapter 1 learnt something else: once quarantined, it scores the same
    other = Unlearner.load(model.save(tmp_path / "other"))
    other.adapters[1] = {k: v + 0.5 for k, v in other.adapters[1].items()}
    other.valid_logits[1] += 1.0
    from recunlearn.models.llm.lora import load_adapter

    load_adapter(other.scorer, 1, other.adapters[1])
    other.combiner.fit(other)
    assert not np.allclose(model.score(test), other.score(test))

    report = model.quarantine(requests[0])
    other.quarantine(requests[0])
    assert report.exact and report.phase == "quarantine"
    assert report.quarantined_parts == model.quarantined_parts == ["adapter-1"]
    assert report.details["removed_samples"] == [requests[0].samples[0]]
    assert model.adapters[1] is None and all(
        torch.equal(kept[k], model.adapters[0][k]) for k in kept
    )
    np.testing.assert_array_equal(model.score(test), other.score(test))
    if method == "apa":
        weights = model.weights(test)
        assert np.all(weights[:, 1] == 0) and np.allclose(weights.sum(1), 1)

    model.save(tmp_path / "quarantined")
    assert not (tmp_path / "quarantined" / "adapters" / "adapter-1").exists()
    loaded = Unlearner.load(tmp_path / "quarantined")
    assert loaded.pending == [requests[0].request_id]
    np.testing.assert_array_equal(loaded.score(test), model.score(test))
    loaded.quarantine(requests[1])  # batched into the same repair
    report = loaded.repair()
    assert report.details["retrained"] == ["adapter-1"] and loaded.pending == []
    reference.forget_many(requests)
    for k in range(2):
        assert all(torch.equal(reference.adapters[k][n], loaded.adapters[k][n]) for n in kept)
    np.testing.assert_array_equal(loaded.score(test), reference.score(test))


def test_a_failed_quarantine_leaves_the_adapters_and_scores_as_they_were(
    tiny_causal, sample_split, monkeypatch
):
    train, _, test = sample_split
    model = fit("apa", tiny_causal, sample_split)
    before = model.score(test)

    def fail(self, method):
        raise RuntimeError("attention refresh failed")

    with monkeypatch.context() as patch:
        patch.setattr(AdapterAttention, "fit", fail)
        with pytest.raises(RuntimeError):
            model.quarantine(DeletionRequest(samples=[train.ids[model.assignment == 1][0]]))
    assert model.pending == [] and all(a is not None for a in model.adapters)
    assert len(model.train) == len(train)
    np.testing.assert_array_equal(model.score(test), before)


def test_a_failed_repair_leaves_the_model_quarantined_as_it_was(
    tiny_causal, sample_split, monkeypatch, tmp_path
):
    train, _, test = sample_split
    model = fit("apa", tiny_causal, sample_split)
    reference = fit("apa", tiny_causal, sample_split)
    request = DeletionRequest(samples=[train.ids[model.assignment == 1][0]], request_id="r")
    model.quarantine(request)
    scores, logits = model.score(test), model.valid_logits.copy()
    errors, tau = model.combiner.valid_errors.clone(), model.tau_
    kept = {k: v.clone() for k, v in model.adapters[0].items()}

    def fail(self, method):
        raise RuntimeError("attention refresh failed")

    with monkeypatch.context() as patch:
        patch.setattr(AdapterAttention, "fit", fail)
        with pytest.raises(RuntimeError, match="attention refresh failed"):
            model.repair()
    assert model.adapters[1] is None and model.quarantined_parts == ["adapter-1"]
    assert model.pending == ["r"]
    assert all(torch.equal(kept[k], model.adapters[0][k]) for k in kept)
    assert np.array_equal(model.valid_logits, logits) and model.tau_ == tau
    assert torch.equal(model.combiner.valid_errors, errors)
    np.testing.assert_array_equal(
        model.score(test), scores
    )  # the mixture holds no retrained adapter
    model.save(tmp_path / "after-failure")
    assert not (tmp_path / "after-failure" / "adapters" / "adapter-1").exists()

    assert model.repair().details["retrained"] == ["adapter-1"] and model.pending == []
    reference.forget_many([request])
    for k in range(2):
        assert all(torch.equal(reference.adapters[k][n], model.adapters[k][n]) for n in kept)
    np.testing.assert_array_equal(model.score(test), reference.score(test))
