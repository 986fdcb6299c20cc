"""A model recunlearn did not define, registered by kind (or by an installed package's entry point),
trained, forgotten, saved and loaded by the methods like the built-in ones."""

from __future__ import annotations

import textwrap
from typing import Literal

import numpy as np
import pytest
import torch
from pydantic import Field
from torch import nn

import recunlearn.models.registry as model_registry
import recunlearn.unlearn.base as method_registry
from recunlearn.data import DeletionRequest
from recunlearn.errors import ConfigError
from recunlearn.models import MF, CFModel, MFConfig, ModelSpec, available_models, register_model
from recunlearn.testing import FAST_TRAIN, UnlearnerConformance
from recunlearn.train import TrainConfig, fit_model, predict
from recunlearn.unlearn import get_method


class BiasedMF(CFModel):
    """MF plus a learned per-item bias: logit = <p_u, q_i> + b_i, as <(p_u, 1), (q_i, b_i)>."""

    def __init__(
        self, n_users: int, n_items: int, dim: int, init_std: float, generator: torch.Generator
    ):
        super().__init__(n_users, n_items, dim, init_std, generator)
        self.item_bias = nn.Parameter(torch.zeros(n_items))

    def representations(self, user_weight=None, item_weight=None):
        users = self.user_emb.weight if user_weight is None else user_weight
        items = self.item_emb.weight if item_weight is None else item_weight
        return torch.cat([users, torch.ones_like(users[:, :1])], 1), torch.cat(
            [items, self.item_bias[:, None]], 1
        )


@register_model("biased-mf")
class BiasedMFConfig(ModelSpec):
    """MF with a per-item bias."""

    kind: Literal["biased-mf"] = "biased-mf"
    dim: int = Field(48, gt=0)
    """Embedding size."""

    def build(self, n_users, n_items, generator):
        return BiasedMF(n_users, n_items, self.dim, 0.01, generator)


class TwinMF(MF):
    """MF's score through a ``representations`` of its own: the closed forms do not recognise it."""

    def representations(self, user_weight=None, item_weight=None):
        return (
            self.user_emb.weight if user_weight is None else user_weight,
            self.item_emb.weight if item_weight is None else item_weight,
        )


@register_model("twin-mf")
class TwinMFConfig(ModelSpec):
    """MF scored by :class:`TwinMF`."""

    kind: Literal["twin-mf"] = "twin-mf"
    dim: int = Field(8, gt=0)
    """Embedding size."""

    def build(self, n_users, n_items, generator):
        return TwinMF(n_users, n_items, self.dim, 0.01, generator)


OWN = {"kind": "biased-mf"}


class TestRetrainOnOwnModel(UnlearnerConformance):
    method = "retrain"
    config = {"model": OWN, "train": FAST_TRAIN}

    def test_forget_equals_training_the_own_model_without_the_rows(self, tiny_split):
        model = self.fresh(tiny_split)
        assert isinstance(model.model, BiasedMF) and isinstance(model.config.model, BiasedMFConfig)
        train = tiny_split.train
        request = DeletionRequest.from_rows(train, np.arange(0, len(train), 7))
        model.forget(request)
        reference = fit_model(
            BiasedMFConfig(),
            train.drop(request.rows(train)),
            tiny_split.valid,
            TrainConfig(**FAST_TRAIN),
        ).model
        test = tiny_split.test
        np.testing.assert_array_equal(
            model.score_index(test.user, test.item), predict(reference, test.user, test.item)
        )

    def test_the_bias_is_trained_and_saved(self, fitted, tmp_path):
        from recunlearn.unlearn import Unlearner

        bias = fitted.model.item_bias.detach()
        assert bias.abs().max() > 0, "the extra parameter is trained with the embeddings"
        loaded = Unlearner.load(fitted.save(tmp_path / "m"))
        assert torch.equal(loaded.model.item_bias, bias)
        assert loaded.config.model == BiasedMFConfig()


class TestSISAOnOwnModel(UnlearnerConformance):
    method = "sisa"
    config = {"n_shards": 2, "model": OWN, "train": FAST_TRAIN}


class TestFineTuneOnOwnModel(UnlearnerConformance):
    method = "finetune"
    config = {"model": OWN, "train": FAST_TRAIN}


class TestIFRUOnOwnModel(UnlearnerConformance):
    method = "ifru"
    config = {"model": OWN, "train": FAST_TRAIN}

    def test_autograd_update_moves_only_kept_rows_and_lowers_removed_scores(self, tiny_split):
        model = get_method("ifru")({**self.config, "guard": False}).fit(
            tiny_split.train, tiny_split.valid
        )
        train = tiny_split.train
        removed = train.take(np.flatnonzero(train.label > 0)[::6])
        users_before = model.model.user_emb.weight.detach().clone()
        items_before = model.model.item_emb.weight.detach().clone()
        bias_before = model.model.item_bias.detach().clone()
        scores_before = model.score_index(removed.user, removed.item)
        kept_users, kept_items, _ = model.kept_rows(removed, train, None)
        report = model.forget(DeletionRequest(pairs=removed.id_pairs()))
        assert report.details["update"] == "applied" and report.details["derivatives"] == "autograd"
        assert report.details["solver"] == "cg", (
            "the 'block' solver's blocks are MF's and LightGCN's: CG instead"
        )
        moved_users = np.flatnonzero((model.model.user_emb.weight != users_before).any(1).numpy())
        moved_items = np.flatnonzero((model.model.item_emb.weight != items_before).any(1).numpy())
        assert len(moved_users) and set(moved_users) <= set(kept_users)
        assert len(moved_items) and set(moved_items) <= set(kept_items)
        assert torch.equal(model.model.item_bias, bias_before), "only embedding rows move"
        assert model.score_index(removed.user, removed.item).mean() < scores_before.mean()

    def test_bpr_update_lowers_removed_scores(self, tiny_split):
        train_config = {**FAST_TRAIN, "loss": "bpr", "valid_metric": "auc"}
        model = get_method("ifru")(model=OWN, train=train_config, guard=False).fit(
            tiny_split.train, tiny_split.valid
        )
        train = tiny_split.train
        removed = train.take(np.flatnonzero(train.label > 0)[::6])
        before = model.score_index(removed.user, removed.item)
        report = model.forget(DeletionRequest(pairs=removed.id_pairs()))
        assert report.details["update"] == "applied" and report.parts[0].parameter_rows > 0
        assert model.score_index(removed.user, removed.item).mean() < before.mean()


@pytest.mark.parametrize(
    ("method", "solver"),
    [
        ("scif", {"method": "exact", "damping": 0.0}),
        ("ifru", {"method": "cg", "tol": 1e-8, "damping": 0.0, "preconditioner": "none"}),
    ],
)
def test_autograd_update_equals_the_closed_form_on_the_same_score(tiny_split, method, solver):
    """MF under a representations the closed forms do not recognise: autograd over the full tables
    gives the closed-form update (the Hessian of rows not touching a kept row is zero there)."""
    train = tiny_split.train
    request = DeletionRequest.from_rows(train, np.arange(0, len(train), 9))
    tables = {}
    for kind in ("mf", "twin-mf"):
        model = get_method(method)(
            model={"kind": kind, "dim": 8},
            train=FAST_TRAIN,
            guard=False,
            hessian_rows_per_node=None,
            solver=solver,
        ).fit(train, tiny_split.valid)
        report = model.forget(request)
        assert report.details["update"] == "applied"
        assert ("derivatives" in report.details) == (kind == "twin-mf")
        tables[kind] = torch.cat(
            [model.model.user_emb.weight, model.model.item_emb.weight]
        ).detach()
    torch.testing.assert_close(tables["twin-mf"], tables["mf"], rtol=1e-4, atol=1e-5)


def test_model_config_by_kind():
    config = get_method("retrain").Config.model_validate({"model": {"kind": "biased-mf", "dim": 4}})
    assert isinstance(config.model, BiasedMFConfig) and config.model.dim == 4
    assert config.model_dump()["model"] == {"kind": "biased-mf", "dim": 4}, (
        "the subclass's fields are saved"
    )
    assert "biased-mf" in available_models() and {"mf", "lightgcn"} <= set(available_models())
    with pytest.raises(ConfigError, match=r"unknown model kind 'nope'; available: .*biased-mf"):
        get_method("retrain")(model={"kind": "nope"})
    with pytest.raises(ConfigError, match=r"model.dim: Input should be greater than 0"):
        get_method("retrain")(model={"kind": "biased-mf", "dim": 0})
    with pytest.raises(ConfigError, match="needs a 'kind'"):
        get_method("retrain")(model={"dim": 4})


def test_register_model_refuses_what_could_not_be_loaded_back():
    with pytest.raises(ConfigError, match="declares kind 'biased-mf'"):
        register_model("other")(BiasedMFConfig)
    with pytest.raises(ConfigError, match="registered twice"):
        register_model("mf")(_SecondMF)

    class Unregistered(ModelSpec):
        kind: Literal["biased-mf"] = "biased-mf"

        def build(self, n_users, n_items, generator):
            return MF(n_users, n_items, 4, 0.01, generator)

    with pytest.raises(ConfigError, match="not the spec registered for kind 'biased-mf'"):
        get_method("retrain")(model=Unregistered())


class _SecondMF(MFConfig):
    """Another spec claiming the built-in kind."""


PLUGIN = '''
from typing import Literal

from recunlearn.models import MF, ModelSpec
from recunlearn.unlearn.retrain import Retrain


class PluggedSpec(ModelSpec):
    """A package's model."""

    kind: Literal["plugged-mf"] = "plugged-mf"
    dim: int = 4
    """Embedding size."""

    def build(self, n_users, n_items, generator):
        return MF(n_users, n_items, self.dim, 0.01, generator)


class PluggedRetrain(Retrain):
    """A package's method."""
'''


def test_entry_points_register_models_and_methods(tmp_path, monkeypatch, tiny_split):
    """An installed distribution's entry points, found on first use of their names."""
    (tmp_path / "recunlearn_plugin_example.py").write_text(PLUGIN)
    info = tmp_path / "recunlearn_plugin_example-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: recunlearn-plugin-example\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text(
        textwrap.dedent("""\
        [recunlearn.models]
        plugged-mf = recunlearn_plugin_example:PluggedSpec
        broken-mf = recunlearn_plugin_example:NoSuchName

        [recunlearn.methods]
        plugged-retrain = recunlearn_plugin_example:PluggedRetrain
        """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(model_registry, "_MODELS", dict(model_registry._MODELS))
    monkeypatch.setattr(method_registry, "_REGISTRY", dict(method_registry._REGISTRY))

    assert {"plugged-mf", "broken-mf"} <= set(available_models())
    assert "plugged-mf" not in model_registry._MODELS, "listed, not loaded until used"
    method = get_method("plugged-retrain")({"model": {"kind": "plugged-mf"}, "train": FAST_TRAIN})
    assert method.name == "plugged-retrain" and type(method.config.model).__name__ == "PluggedSpec"
    method.fit(tiny_split.train, tiny_split.valid)
    assert method.model.dim == 4
    with pytest.raises(
        ConfigError, match=r"entry point 'broken-mf' of 'recunlearn.models' .* failed to load"
    ):
        get_method("retrain")(model={"kind": "broken-mf"})


def test_a_method_subclasses_one_of_the_two_family_classes(monkeypatch):
    """The family class reads the tables and handles requests: a direct ``Unlearner`` subclass is
    refused when it is registered, by decorator or entry point, not when it is first fitted."""
    from recunlearn.unlearn import CFUnlearner, Unlearner, register

    monkeypatch.setattr(method_registry, "_REGISTRY", dict(method_registry._REGISTRY))

    class Direct(Unlearner):
        """Subclasses the contract, not a family."""

    expected = (
        "method 'direct': 'Direct' must subclass CFUnlearner (interaction tables) or "
        "LLMUnlearner (prompt samples)"
    )
    with pytest.raises(ConfigError) as refused:
        register("direct")(Direct)
    assert str(refused.value) == expected
    with pytest.raises(
        ConfigError, match="names neither a subclass of CFUnlearner or LLMUnlearner"
    ):
        method_registry._register_entry_point("direct", Direct)
    assert "direct" not in method_registry._REGISTRY

    class OfTheFamily(CFUnlearner):
        """Subclasses the collaborative family."""

    assert register("of-the-family")(OfTheFamily) is OfTheFamily
    assert get_method("of-the-family") is OfTheFamily
