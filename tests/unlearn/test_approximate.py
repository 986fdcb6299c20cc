"""What every approximate method (IFRU, IF, SCIF, fine-tuning, NegGrad) shares: the losses they
accept, what ``adopt`` carries over, how many parameter rows a report says changed, the damping
scale of the influence step, and a failed update leaving the model as it was."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recunlearn.data import DeletionRequest
from recunlearn.testing import FAST_TRAIN
from recunlearn.unlearn import get_method
from recunlearn.unlearn.influence.blocks import LowRankBlocks
from recunlearn.unlearn.influence.objective import SolverError
from recunlearn.unlearn.influence.unlearner import damping_scale

LIGHTGCN = {"model": {"kind": "lightgcn", "dim": 16}, "train": FAST_TRAIN}


@pytest.fixture(scope="module")
def originals(tiny_split):
    """One trained model per kind, for every method to adopt."""
    return {
        kind: get_method("retrain")(config).fit(tiny_split.train, tiny_split.valid)
        for kind, config in (("mf", {"train": FAST_TRAIN}), ("lightgcn", LIGHTGCN))
    }


def embedding_rows(method) -> tuple[torch.Tensor, torch.Tensor]:
    return (
        method.model.user_emb.weight.detach().clone(),
        method.model.item_emb.weight.detach().clone(),
    )


@pytest.mark.parametrize("name", ["ifru", "if", "scif"])
@pytest.mark.parametrize("kind", ["mf", "lightgcn"])
def test_influence_methods_update_a_bpr_model(tiny_split, name, kind):
    """They differentiate the expected BPR objective (recunlearn.unlearn.influence.pairwise) of a BPR model."""
    config = {"train": {**FAST_TRAIN, "loss": "bpr"}, "model": {"kind": kind, "dim": 16}}
    original = get_method("retrain")(config).fit(tiny_split.train, tiny_split.valid)
    method = get_method(name).adopt(original, {"guard": False})
    before = embedding_rows(method)
    report = method.forget(DeletionRequest.from_rows(tiny_split.train, np.arange(5)))
    assert report.details["objective"] == "bpr" and report.details["update"] == "applied"
    after = embedding_rows(method)
    assert not torch.equal(before[0], after[0]) or not torch.equal(before[1], after[1])
    assert all(torch.isfinite(t).all() for t in after)


@pytest.mark.parametrize("name", ["finetune", "neggrad"])
def test_finetune_and_neggrad_take_a_bpr_model(tiny_split, name):
    """They use the training loss itself."""
    original = get_method("retrain")(train={**FAST_TRAIN, "loss": "bpr", "max_epochs": 1}).fit(
        tiny_split.train, tiny_split.valid
    )
    report = (
        get_method(name)
        .adopt(original, {"epochs": 1} if name == "finetune" else {"steps": 1})
        .forget(DeletionRequest.from_rows(tiny_split.train, np.arange(5)))
    )
    assert report.parts[0].parameter_rows > 0


def test_adopt_carries_the_forgotten_pairs_over(originals, tiny_split):
    """A pair the original forgot is a no-op for the adopted copy too, not an unknown pair."""
    original = get_method("ifru").adopt(originals["mf"])
    request = DeletionRequest.from_rows(tiny_split.train, np.arange(5))
    original.forget(request)
    copy = get_method("scif").adopt(original)
    assert copy.forget(request).noop
    assert copy._forgotten == original._forgotten and copy._forgotten is not original._forgotten


@pytest.mark.parametrize("kind", ["mf", "lightgcn"])
@pytest.mark.parametrize("name", ["neggrad", "finetune", "ifru"])
def test_parameter_rows_are_the_rows_that_changed(originals, name, kind):
    """Each changed row once, orphans included: NegGrad counted the orphan twice and missed rows
    LightGCN's propagation moves, fine-tuning counted more rows than the model has, IFRU on MF
    counted kept rows whose step is 0 (no removed row touches them)."""
    settings = (
        {"epochs": 1}
        if name == "finetune"
        else {"steps": 2}
        if name == "neggrad"
        else {"guard": False}
    )
    method = get_method(name).adopt(originals[kind], settings)
    users, items = embedding_rows(method)
    report = method.forget(DeletionRequest(users=["u5"]))
    changed = int((method.model.user_emb.weight != users).any(1).sum()) + int(
        (method.model.item_emb.weight != items).any(1).sum()
    )
    assert report.details["reset_rows"] == 1
    assert report.parts[0].parameter_rows == changed


def test_parameter_rows_are_0_when_the_step_is_0(originals, tiny_split, monkeypatch):
    """A solver that returns x = 0 changes no row, and the report says no update was made."""
    import recunlearn.unlearn.influence.unlearner as common

    method = get_method("ifru").adopt(originals["mf"], {"solver": {"method": "cg"}, "guard": False})
    monkeypatch.setattr(
        common,
        "solve",
        lambda config, hvp, b, **_: (common.SolveResult(torch.zeros_like(b), 0), 0.0),
    )
    report = method.forget(DeletionRequest.from_rows(tiny_split.train, np.arange(5)))
    assert (
        report.details["update"] == "none (the solver's step is zero)"
        and report.parts[0].parameter_rows == 0
    )


def test_the_damping_scale_is_positive_and_the_mean_diagonal_where_that_is():
    """A positive mean diagonal is used as it is (bitwise: the steps of trained models do not
    change, though some entries are negative); a mean <= 0 gives the mean absolute value."""
    blocks = torch.diag_embed(torch.tensor([[0.5, -0.1], [0.3, 0.2]]))
    assert damping_scale(blocks) == float(torch.diagonal(blocks, dim1=-2, dim2=-1).mean())
    blocks[0, 0, 0] = -1.0
    assert damping_scale(blocks) == pytest.approx(0.4)
    assert damping_scale(torch.tensor([[-0.2, 0.1]])) == pytest.approx(
        0.15
    )  # the diagonal preconditioner's shape
    low_rank = LowRankBlocks(
        torch.tensor([0, 1]), torch.ones(2, 2), torch.ones(2), torch.tensor([0.1, 0.1])
    )
    assert damping_scale(low_rank) == low_rank.diagonal_mean() > 0


def test_an_under_trained_lightgcn_keeps_a_relative_damping(originals, tiny_split):
    """On the 8-epoch LightGCN the blocks' mean diagonal is negative; the damping used to collapse
    to 1e-15 and the bare per-row step (no coupling bound) to a norm of 2.5e13."""
    method = get_method("ifru").adopt(
        originals["lightgcn"], {"guard": False, "solver": {"method": "block", "coupling": False}}
    )
    report = method.forget(DeletionRequest.from_rows(tiny_split.train, np.arange(0, 60, 3)))
    assert report.details["damping"] > 1e-5
    assert report.details["step_norm"] < 1e5


def test_a_failed_update_leaves_the_model_as_it_was(originals, tiny_split, monkeypatch):
    """Influence methods reset the orphans before their solve: a solver that fails puts them back."""
    import recunlearn.unlearn.influence.unlearner as common

    def failing(*_, **__):
        raise SolverError("diverged")

    method = get_method("ifru").adopt(originals["lightgcn"], {"solver": {"method": "cg"}})
    users, items = embedding_rows(method)
    adjacency, train = method.model.adjacency, method.train
    monkeypatch.setattr(common, "solve", failing)
    with pytest.raises(SolverError):
        method.forget(DeletionRequest(users=["u5"]))
    assert torch.equal(method.model.user_emb.weight, users) and torch.equal(
        method.model.item_emb.weight, items
    )
    assert method.model.adjacency is adjacency and method.train is train
