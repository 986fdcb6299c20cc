import numpy as np
import torch

from recunlearn.data import DeletionRequest
from recunlearn.testing import FAST_TRAIN, UnlearnerConformance
from recunlearn.train import TrainConfig, fit_model, predict
from recunlearn.unlearn import get_method


class TestRetrain(UnlearnerConformance):
    method = "retrain"

    def test_forget_equals_training_without_the_rows(self, tiny_split):
        model = self.fresh(tiny_split)
        train = tiny_split.train
        request = DeletionRequest.from_rows(train, np.arange(0, len(train), 7))
        model.forget(request)
        reference = fit_model(
            model.config.model,
            train.drop(request.rows(train)),
            tiny_split.valid,
            TrainConfig(**FAST_TRAIN),
        ).model
        test = tiny_split.test
        np.testing.assert_array_equal(
            model.score_index(test.user, test.item), predict(reference, test.user, test.item)
        )
        assert get_method("retrain").exact

    def test_forget_many_retrains_once_on_the_union(self, tiny_split, monkeypatch):
        """A batch is one retraining, bitwise the model that forgets the union at once; each row is
        reported by the first request naming it, and a request naming only rows already taken is a no-op."""
        train = tiny_split.train
        u3 = train.users.index(["u3"])[0]
        u3_rows = np.flatnonzero(train.user == u3)
        first = DeletionRequest(request_id="a", users=["u3"])
        others = [r for r in range(0, 60, 9) if r not in u3_rows]
        overlapping = DeletionRequest.from_rows(train, np.r_[u3_rows[:1], others], request_id="b")
        repeat = DeletionRequest.from_rows(train, u3_rows[:2], request_id="c")
        batched = self.fresh(tiny_split)
        fits = []
        original = type(batched)._fit
        monkeypatch.setattr(
            type(batched), "_fit", lambda model: (fits.append(len(model.train)), original(model))[1]
        )
        reports = batched.forget_many([first, overlapping, repeat])
        assert len(fits) == 1, "one retraining for the whole batch"
        assert [r.request_id for r in reports] == ["a", "b", "c"]
        assert reports[0].removed_rows == len(u3_rows) and {
            p[0] for p in reports[0].removed_pairs
        } == {"u3"}
        assert reports[1].removed_rows == len(others) and all(
            p[0] != "u3" for p in reports[1].removed_pairs
        )
        assert reports[2].noop and reports[2].removed_rows == 0
        assert reports[0].details["batched_with"] == 3 and reports[0].changed_parts == ["model"]

        union = self.fresh(tiny_split)
        union.forget(DeletionRequest.from_rows(train, first.rows(train) | overlapping.rows(train)))
        assert len(fits) == 1 + 2, "each fresh model fits once, the union once"
        state, expected = batched.model.state_dict(), union.model.state_dict()
        assert state.keys() == expected.keys() and all(
            torch.equal(state[k], expected[k]) for k in state
        )
