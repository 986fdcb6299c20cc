"""Tests every registered collaborative-filtering method must pass.

A method's test file subclasses :class:`UnlearnerConformance`, names the method and a small
config, and adds only what is particular to it::

    class TestSISA(UnlearnerConformance):
        method = "sisa"
        config = {"n_shards": 3, "train": FAST_TRAIN}
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pytest

from recunlearn.data import DeletionRequest, user_deletion
from recunlearn.errors import ConfigError, EmptyRequestError, RecUnlearnError, UnknownIdError
from recunlearn.unlearn import Unlearner, get_method

FAST_TRAIN = {"max_epochs": 8, "patience": 3, "batch_size": 256, "lr": 0.01, "seed": 0}
"""Few epochs on the tiny data set: enough to learn its two groups, seconds per method."""


class UnlearnerConformance:
    method: ClassVar[str]
    config: ClassVar[dict[str, Any]] = {"train": FAST_TRAIN}

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
