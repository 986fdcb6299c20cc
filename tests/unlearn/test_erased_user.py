"""An erased user is unknown to the library, as the deletion service answers 404 for them."""

from __future__ import annotations

import numpy as np
import pytest

from recunlearn.data import DeletionRequest
from recunlearn.errors import UnknownIdError
from recunlearn.unlearn import Unlearner, get_method

TRAIN = {"max_epochs": 2, "patience": 1, "batch_size": 256, "lr": 0.01, "seed": 0}


@pytest.fixture
def model(tiny_split) -> Unlearner:
    return get_method("finetune")(train=TRAIN).fit(tiny_split.train, tiny_split.valid)


def test_a_user_forgotten_whole_is_unknown(model):
    items = model.train.items.ids[:2].tolist()
    assert len(model.recommend("u3", k=3)) == 3
    model.forget(DeletionRequest(users=["u3"]))
    with pytest.raises(UnknownIdError, match=r"unknown user id\(s\): 'u3' \(erased"):
        model.recommend("u3")
    with pytest.raises(UnknownIdError, match="'u3'"):
        model.score(["u4", "u3"], items)
    assert model.score(["u4", "u4"], items).shape == (2,)  # everyone else is served as before
    assert len(model.recommend("u4", k=3)) == 3


def test_a_user_whose_every_pair_was_forgotten_is_unknown_and_one_pair_less_is_not(model):
    train = model.train
    u5 = train.users.index(["u5"])[0]
    pairs = list(zip(["u5"] * 99, train.items.ids[train.item[train.user == u5]].tolist()))
    model.forget(DeletionRequest(pairs=pairs[:-1]))
    assert np.isfinite(model.score(["u5"], [pairs[-1][1]])).all()
    model.forget(DeletionRequest(pairs=pairs[-1:]))
    with pytest.raises(UnknownIdError, match="'u5'"):
        model.recommend("u5")


def test_a_user_without_training_rows_who_was_never_forgotten_stays_known(tiny_split):
    train = tiny_split.train
    cold = train.users.index(["u7"])[0]
    model = get_method("finetune")(train=TRAIN).fit(
        train.drop(train.user == cold), tiny_split.valid
    )
    assert len(model.recommend("u7", k=2)) == 2
