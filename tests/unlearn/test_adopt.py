"""Factors trained elsewhere, adopted with their training table and objective, then forgotten."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recunlearn.data import DeletionRequest
from recunlearn.errors import ConfigError, DataError, UnknownIdError
from recunlearn.models import MFConfig
from recunlearn.testing import FAST_TRAIN
from recunlearn.train import TrainConfig, fit_model
from recunlearn.unlearn import Unlearner, adopt_factors


@pytest.fixture(scope="module")
def factors(tiny_split):
    """Factors of a model trained outside any method (numpy arrays, as another library exports them)."""
    model = fit_model(
        MFConfig(dim=16), tiny_split.train, tiny_split.valid, TrainConfig(**FAST_TRAIN)
    ).model
    return (
        model.user_emb.weight.detach().numpy().copy(),
        model.item_emb.weight.detach().numpy().copy(),
    )


def removed_positives(train):
    return train.take(np.flatnonzero(train.label > 0)[::6])


def test_adopted_factors_score_as_their_dot_products(tiny_split, factors):
    users, items = factors
    adopted = adopt_factors(
        "ifru", users, items, tiny_split.train, tiny_split.valid, loss="bce", l2=0.01
    )
    expected = 1 / (1 + np.exp(-(users[:3] @ items.T)))
    np.testing.assert_allclose(adopted.score_all(np.arange(3)), expected, rtol=1e-5)
    assert adopted.config.model == MFConfig(dim=16) and adopted.config.train.l2 == 0.01

    order = np.random.default_rng(0).permutation(
        len(users)
    )  # another library's row order, with its ids
    shuffled = adopt_factors(
        "ifru",
        users[order],
        items,
        tiny_split.train,
        loss="bce",
        l2=0.01,
        user_ids=tiny_split.train.users.ids[order],
    )
    np.testing.assert_array_equal(shuffled.score_all(np.arange(3)), adopted.score_all(np.arange(3)))


def test_ifru_forgets_on_adopted_factors_without_training(
    tiny_split, factors, tmp_path, monkeypatch
):
    import recunlearn.unlearn._approximate as common

    monkeypatch.setattr(
        common, "fit_model", lambda *a, **k: pytest.fail("adopted factors are never trained")
    )
    users, items = factors
    adopted = adopt_factors(
        "ifru", users, items, tiny_split.train, tiny_split.valid, loss="bce", l2=0.01, guard=False
    )
    removed = removed_positives(tiny_split.train)
    kept_users, kept_items, _ = adopted.kept_rows(removed, adopted.train, None)
    before = adopted.score_index(removed.user, removed.item)
    report = adopted.forget(DeletionRequest(pairs=removed.id_pairs()))
    assert report.details["update"] == "applied" and len(adopted.train) == len(
        tiny_split.train
    ) - len(removed)
    moved_users = np.flatnonzero((adopted.model.user_emb.weight.detach().numpy() != users).any(1))
    moved_items = np.flatnonzero((adopted.model.item_emb.weight.detach().numpy() != items).any(1))
    assert len(moved_users) and set(moved_users) <= set(kept_users)
    assert len(moved_items) and set(moved_items) <= set(kept_items)
    assert len(kept_users) + len(kept_items) < len(users) + len(items), (
        "pruning keeps some rows out"
    )
    assert adopted.score_index(removed.user, removed.item).mean() < before.mean()

    loaded = Unlearner.load(adopted.save(tmp_path / "adopted"))
    np.testing.assert_array_equal(loaded.score_all(np.arange(5)), adopted.score_all(np.arange(5)))
    assert loaded.forget(DeletionRequest(pairs=removed.id_pairs()[:1])).noop, (
        "it still knows what it forgot"
    )


@pytest.mark.parametrize("method", ["if", "scif", "neggrad"])
def test_other_approximate_methods_lower_the_removed_scores(tiny_split, factors, method):
    users, items = factors
    settings = {} if method == "neggrad" else {"guard": False}
    adopted = adopt_factors(
        method, users, items, tiny_split.train, tiny_split.valid, loss="bce", l2=0.01, **settings
    )
    removed = removed_positives(tiny_split.train)
    before = adopted.score_index(removed.user, removed.item)
    adopted.forget(DeletionRequest(pairs=removed.id_pairs()))
    assert adopted.score_index(removed.user, removed.item).mean() < before.mean()


def test_finetune_trains_the_adopted_factors_on_what_remains(tiny_split, factors):
    users, items = factors
    adopted = adopt_factors(
        "finetune",
        users,
        items,
        tiny_split.train,
        tiny_split.valid,
        loss="bpr",
        l2=0.0,
        config={"train": {"valid_metric": "auc"}},
        epochs=1,
    )
    assert adopted.config.train.loss == "bpr" and adopted.config.train.valid_metric == "auc"
    report = adopted.forget(DeletionRequest(users=["u3"]))
    assert report.parts[0].parameter_rows > 1 and report.details["epochs"] == 1


def test_bad_factors_are_refused_with_one_line(tiny_split, factors):
    users, items = factors
    train = tiny_split.train
    nan_items = items.copy()
    nan_items[5, 2] = np.nan
    cases = [
        (
            dict(user_factors=users[:-1]),
            DataError,
            r"user_factors have 59 rows but the training data has 60 users",
        ),
        (
            dict(user_factors=users[0]),
            DataError,
            r"user_factors must be a 2-D array \(users x dimension\)",
        ),
        (
            dict(item_factors=items[:, :8]),
            DataError,
            "user_factors have 16 columns but item_factors 8",
        ),
        (
            dict(item_factors=nan_items),
            DataError,
            r"item_factors hold 1 non-finite value\(s\) .* row 5",
        ),
        (dict(item_factors=items.astype(str)), DataError, "item_factors must hold numbers"),
        (dict(user_ids=train.users.ids[::-1][:-1]), DataError, "60 rows but 59 user ids"),
        (
            dict(user_ids=np.r_[train.users.ids[:-1], train.users.ids[:1]]),
            DataError,
            "each training user once",
        ),
        (dict(user_ids=np.r_[train.users.ids[:-1], ["stranger"]]), UnknownIdError, "stranger"),
        (dict(method="sisa"), ConfigError, "'sisa' is not an approximate method"),
        (dict(model={"kind": "mf"}), ConfigError, "leave 'model' out"),
        (dict(loss="hinge"), ConfigError, "train.loss"),
    ]
    for change, error, message in cases:
        arguments = {"method": "ifru", "user_factors": users, "item_factors": items, **change}
        with pytest.raises(error, match=message) as caught:
            adopt_factors(
                arguments.pop("method"),
                arguments.pop("user_factors"),
                arguments.pop("item_factors"),
                train,
                loss=arguments.pop("loss", "bce"),
                l2=0.01,
                **arguments,
            )
        assert "\n" not in str(caught.value), change
    assert torch.equal(torch.from_numpy(users), torch.from_numpy(factors[0])), (
        "the caller's arrays are not touched"
    )
