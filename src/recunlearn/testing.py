"""The conformance tests every registered unlearning method passes, shipped with the package so a
third-party method runs them too (needs pytest: the ``test`` extra).

A method's test file subclasses :class:`UnlearnerConformance` (interaction methods) or
:class:`LLMConformance` (methods on prompt samples), names the method and a small config, and adds
only what is particular to it::

    class TestSISA(UnlearnerConformance):
        method = "sisa"
        config = {"n_shards": 3, "train": FAST_TRAIN}

The data (a tiny two-group table, prompts built from it) and, for LLM methods, a tiny random
backbone are built here, offline, in seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
import torch

from recunlearn.data import DeletionRequest, Interactions, Split, random_split, user_deletion
from recunlearn.data.samples import SampleTable
from recunlearn.data.tallrec import build_samples, split_samples, subsample
from recunlearn.errors import ConfigError, EmptyRequestError, RecUnlearnError, UnknownIdError
from recunlearn.models.llm.backbones import create_tiny_model
from recunlearn.unlearn import Unlearner, get_method

FAST_TRAIN = {"max_epochs": 8, "patience": 3, "batch_size": 256, "lr": 0.01, "seed": 0}
"""Few epochs on the tiny data set: enough to learn its two groups, seconds per method."""


FAST_ADAPTER = {"lr": 1e-2, "batch_size": 16, "max_epochs": 2, "patience": 1}
"""Adapter training on the tiny samples: two epochs of 16-sample steps."""


def make_tiny(
    n_users: int = 60, n_items: int = 40, density: float = 0.35, seed: int = 0
) -> Interactions:
    """Users and items in two latent groups; a user likes items of their own group (85% of the time)."""
    rng = np.random.default_rng(seed)
    ug = rng.integers(0, 2, n_users)
    ig = rng.integers(0, 2, n_items)
    rows = [(u, i) for u in range(n_users) for i in range(n_items) if rng.random() < density]
    users, items = np.array(rows).T
    agree = ug[users] == ig[items]
    like = np.where(rng.random(len(users)) < 0.85, agree, ~agree)
    rating = np.where(like, rng.integers(4, 6, len(users)), rng.integers(1, 4, len(users)))
    frame = pd.DataFrame(
        {
            "user": [f"u{u}" for u in users],
            "item": [f"i{i}" for i in items],
            "rating": rating,
            "timestamp": rng.integers(0, 10**6, len(users)),
        }
    )
    titles = {f"i{i}": f"Movie {i} ({'Drama' if ig[i] else 'Comedy'})" for i in range(n_items)}
    return Interactions.from_frame(frame, threshold=3, titles=titles, name="tiny")


def tiny_split() -> Split:
    """The tiny table split 60/20/20 at random."""
    return random_split(make_tiny(), (0.6, 0.2, 0.2), seed=0)


def tiny_samples() -> SampleTable:
    """TALLRec movie prompts (histories of 4) built from the tiny table."""
    return build_samples(make_tiny(), history=4, max_samples=300)


def tiny_sample_split(samples: SampleTable) -> tuple[SampleTable, SampleTable, SampleTable]:
    """48 training, 20 validation and 24 test prompts, split in time order."""
    train, valid, test = split_samples(samples)
    return subsample(train, 48, 0), subsample(valid, 20, 1), subsample(test, 24, 2)


def tiny_backbone(folder: Path, samples: SampleTable, kind: str = "causal") -> str:
    """A tiny random language model (a causal LM, or an encoder) whose vocabulary covers the prompts."""
    prompts = samples.prompts("input" if kind == "encoder" else "alpaca")
    return str(create_tiny_model(folder, prompts, kind=kind))


def llm_settings(backbone: str, **extra: Any) -> dict[str, Any]:
    """Settings of an LLM method on a tiny backbone with quick adapter training, on CPU."""
    return {
        "backbone": {"name": backbone, "max_length": 128},
        "train": FAST_ADAPTER,
        "device": "cpu",
        **extra,
    }


class UnlearnerConformance:
    """The contract on interaction tables: scoring, forgetting users and pairs, validation rows, files."""

    method: ClassVar[str]
    config: ClassVar[dict[str, Any]] = {"train": FAST_TRAIN}

    @pytest.fixture(scope="class", name="tiny_split")
    @classmethod
    def _tiny_split(cls) -> Split:
        return tiny_split()

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls, tiny_split):
        return get_method(cls.method)(cls.config).fit(tiny_split.train, tiny_split.valid)

    def fresh(self, tiny_split):
        return get_method(self.method)(self.config).fit(tiny_split.train, tiny_split.valid)

    def test_registered(self):
        assert get_method(self.method).name == self.method

    def test_score_shapes_and_learns(self, fitted, tiny_split):
        test = tiny_split.test
        scores = fitted.score_index(test.user, test.item)
        assert scores.shape == (len(test),) and np.isfinite(scores).all()
        grid = fitted.score_all(np.array([0, 1, 2]))
        assert grid.shape == (3, tiny_split.train.n_items)
        np.testing.assert_allclose(
            grid[1, test.item[test.user == 1]],
            fitted.score_index(test.user[test.user == 1], test.item[test.user == 1]),
            rtol=1e-5,
            atol=1e-6,
        )
        from recunlearn.evaluate import roc_auc

        assert roc_auc(test.label, scores) > 0.6, "the tiny data's two groups are easy to learn"

    def test_score_by_external_id(self, fitted, tiny_split):
        train = tiny_split.train
        by_id = fitted.score(train.users.ids[train.user[:5]], train.items.ids[train.item[:5]])
        np.testing.assert_allclose(by_id, fitted.score_index(train.user[:5], train.item[:5]))

    def test_unknown_ids_rejected(self, fitted):
        with pytest.raises(UnknownIdError, match="nobody"):
            fitted.score(["nobody"], ["i0"])
        with pytest.raises(UnknownIdError):
            fitted.forget(DeletionRequest(users=["nobody"]))
        with pytest.raises(UnknownIdError, match="never in the training or validation data"):
            fitted.forget(DeletionRequest(pairs=self._absent_pairs(fitted)))

    def test_a_request_for_every_row_is_refused(self, fitted):
        rows = len(fitted.train)
        with pytest.raises(RecUnlearnError, match="may not remove every training row"):
            fitted.forget(DeletionRequest(users=list(fitted.train.users.ids)))
        assert len(fitted.train) == rows, "nothing was removed"

    @staticmethod
    def _absent_pairs(model: Unlearner) -> list[tuple[str, str]]:
        train = model.train
        present = set(train.pair_keys.tolist()) | set(model.valid.pair_keys.tolist())
        for u in range(train.n_users):
            for i in range(train.n_items):
                if u * train.n_items + i not in present:
                    return [(str(train.users.ids[u]), str(train.items.ids[i]))]
        raise AssertionError("tiny data is complete")

    def test_empty_request_rejected(self):
        with pytest.raises(EmptyRequestError):
            DeletionRequest()

    def test_bad_config_rejected(self):
        with pytest.raises(ConfigError, match="no_such_option"):
            get_method(self.method)({**self.config, "no_such_option": 1})

    def test_forget_removes_and_is_idempotent(self, tiny_split):
        model = self.fresh(tiny_split)
        n_before = len(model.train)
        request = user_deletion(tiny_split.train, users=["u3"])
        report = model.forget(request)
        removed = int((tiny_split.train.users.ids[tiny_split.train.user] == "u3").sum())
        assert report.removed_rows == removed > 0 and not report.noop
        assert report.request_id == request.request_id and report.method == self.method
        assert len(model.train) == n_before - removed
        assert not (model.train.user == model.train.users.index(["u3"])[0]).any()
        assert report.seconds > 0 and report.parts
        in_valid = int((tiny_split.valid.users.ids[tiny_split.valid.user] == "u3").sum())
        assert report.removed_valid_rows == in_valid > 0, (
            "the user's validation rows leave with them"
        )
        assert len(model.valid) == len(tiny_split.valid) - in_valid
        assert not (model.valid.user == model.valid.users.index(["u3"])[0]).any()
        scores = model.score_index(tiny_split.test.user, tiny_split.test.item)
        again = model.forget(request)
        assert again.noop and again.removed_rows == 0
        np.testing.assert_array_equal(
            model.score_index(tiny_split.test.user, tiny_split.test.item), scores
        )

    def test_a_validation_pair_is_forgotten_without_touching_training(self, tiny_split, tmp_path):
        model = self.fresh(tiny_split)
        valid = tiny_split.valid
        row = int(np.flatnonzero(~np.isin(valid.pair_keys, tiny_split.train.pair_keys))[0])
        pair = (str(valid.users.ids[valid.user[row]]), str(valid.items.ids[valid.item[row]]))
        train_hash = model.train.content_hash()
        report = model.forget(DeletionRequest(pairs=[pair]))
        assert not report.noop and report.removed_rows == 0 and report.removed_valid_rows == 1
        assert report.removed_pairs == [pair] and report.details.get("validation_only")
        assert model.train.content_hash() == train_hash and len(model.valid) == len(valid) - 1
        assert model.valid.pair_keys.tolist().count(int(valid.pair_keys[row])) == 0
        assert model.forget(DeletionRequest(pairs=[pair])).noop, "forgetting it again is a no-op"
        loaded = Unlearner.load(model.save(tmp_path / "m"))
        assert loaded.valid.content_hash() == model.valid.content_hash(), (
            "the saved folder does not hold it either"
        )

    def test_save_load_round_trip(self, fitted, tiny_split, tmp_path):
        fitted.save(tmp_path / "m")
        loaded = Unlearner.load(tmp_path / "m")
        assert type(loaded) is type(fitted)
        test = tiny_split.test
        np.testing.assert_array_equal(
            loaded.score_index(test.user, test.item), fitted.score_index(test.user, test.item)
        )
        assert loaded.train.content_hash() == fitted.train.content_hash()
        assert not list((tmp_path / "m").glob("*.pkl")) and not list((tmp_path / "m").glob("*.pt"))


class LLMConformance:
    """The contract on prompt samples (TALLRec-style methods on a tiny random causal LM): scoring,
    forgetting samples and users, refusals, files; for exact partition methods, that every retrained
    adapter is bitwise the one training its shard's remaining samples from scratch gives."""

    method: ClassVar[str]
    config: ClassVar[dict[str, Any]] = {}
    """Method settings on top of :func:`llm_settings` (e.g. ``n_shards``)."""

    @pytest.fixture(scope="class")
    @classmethod
    def samples(cls) -> tuple[SampleTable, SampleTable, SampleTable]:
        return tiny_sample_split(tiny_samples())

    @pytest.fixture(scope="class")
    @classmethod
    def settings(cls, tmp_path_factory) -> dict[str, Any]:
        folder = tiny_backbone(tmp_path_factory.mktemp("tiny-causal"), tiny_samples())
        return llm_settings(folder, **cls.config)

    def fresh(self, settings, samples) -> Unlearner:
        train, valid, _ = samples
        return get_method(self.method)(settings).fit(train, valid)

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls, settings, samples) -> Unlearner:
        return get_method(cls.method)(settings).fit(samples[0], samples[1])

    def test_registered_for_samples(self):
        assert get_method(self.method).name == self.method
        assert get_method(self.method).data_kind == "samples"

    def test_scores_are_probabilities(self, fitted, samples):
        test = samples[2]
        scores = fitted.score(test)
        assert scores.shape == (len(test),) and np.all((scores > 0) & (scores < 1))
        with pytest.raises(RecUnlearnError, match="SampleTable"):
            fitted.score(np.array([0]))

    def test_forget_a_sample_then_again_is_a_noop(self, settings, samples):
        model, test = self.fresh(settings, samples), samples[2]
        victim = str(model.train.ids[5])
        report = model.forget(DeletionRequest(samples=[victim]))
        assert report.removed_rows == 1 and not report.noop and report.parts
        assert report.exact == get_method(self.method).exact and report.method == self.method
        assert victim not in set(model.train.ids.tolist()) and report.seconds > 0
        scores = model.score(test)
        again = model.forget(DeletionRequest(samples=[victim]))
        assert again.noop and again.removed_rows == 0
        assert again.exact == get_method(self.method).exact, "a no-op is as exact as the method"
        np.testing.assert_array_equal(model.score(test), scores)

    def test_forget_a_user_removes_every_prompt_of_theirs(self, settings, samples):
        model = self.fresh(settings, samples)
        train, valid, _ = samples
        user = str(train.user[0])
        report = model.forget(DeletionRequest(users=[user]))
        assert report.removed_rows == int((train.user == user).sum()) > 0
        assert report.removed_valid_rows == int((valid.user == user).sum())
        assert user not in set(model.train.user.tolist()) | set(model.valid.user.tolist())

    def test_forgetting_retrains_exactly_or_says_it_is_approximate(self, settings, samples):
        """Exact: each retrained adapter is bitwise what training its shard's remaining samples from
        scratch gives. Approximate: the report says so, and names the adapters it updated."""
        model = self.fresh(settings, samples)
        report = model.forget(DeletionRequest(samples=[str(model.train.ids[3])]))
        if not get_method(self.method).exact:
            assert not report.exact and any(p.action == "updated" for p in report.parts)
            return
        retrained = report.details["retrained_adapters"]
        assert retrained
        for k in retrained:
            fresh = model.trainer.runner()(model.trainer.job(model, k)).adapter
            assert fresh.keys() == model.models[k].keys()
            for name, value in fresh.items():
                assert torch.equal(value, model.models[k][name]), f"adapter {k}: {name}"

    def test_unknown_ids_rejected(self, fitted):
        rows = len(fitted.train)
        with pytest.raises(UnknownIdError):
            fitted.forget(DeletionRequest(samples=["no-such-sample"]))
        with pytest.raises(UnknownIdError):
            fitted.forget(DeletionRequest(users=["no-such-user"]))
        with pytest.raises(UnknownIdError, match="no-such-item"):
            fitted.forget(DeletionRequest(items=["no-such-item"]))
        assert len(fitted.train) == rows

    def test_a_request_for_every_sample_is_refused(self, fitted):
        rows = len(fitted.train)
        with pytest.raises(RecUnlearnError, match="every training sample"):
            fitted.forget(DeletionRequest(samples=fitted.train.ids.tolist()))
        assert len(fitted.train) == rows, "nothing was removed"

    def test_bad_config_rejected(self, settings):
        with pytest.raises(ConfigError, match="no_such_option"):
            get_method(self.method)({**settings, "no_such_option": 1})

    def test_save_load_round_trip(self, fitted, samples, tmp_path):
        test = samples[2]
        fitted.save(tmp_path / "m")
        assert (tmp_path / "m" / "adapters" / "adapter-0" / "adapter_model.safetensors").is_file()
        loaded = Unlearner.load(tmp_path / "m")
        assert type(loaded) is type(fitted)
        assert loaded.train.content_hash() == fitted.train.content_hash()
        np.testing.assert_allclose(loaded.score(test), fitted.score(test), atol=1e-6)
        assert not list((tmp_path / "m").rglob("*.pkl")) and not list(
            (tmp_path / "m").rglob("*.pt")
        )
