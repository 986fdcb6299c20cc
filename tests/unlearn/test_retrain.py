import numpy as np

from recunlearn.data import DeletionRequest
from recunlearn.train import TrainConfig, fit_model, predict
from recunlearn.unlearn import get_method
from tests.conformance import FAST_TRAIN, UnlearnerConformance


class TestRetrain(UnlearnerConformance):
    method = "retrain"

    def test_forget_equals_training_without_the_rows(self, tiny_split):
        model = self.fresh(tiny_split)
        train = tiny_split.train
        request = DeletionRequest.from_rows(train, np.arange(0, len(train), 7))
        model.forget(request)
        reference = fit_model(model.config.model, train.drop(request.rows(train)), tiny_split.valid,
                              TrainConfig(**FAST_TRAIN)).model
        test = tiny_split.test
        np.testing.assert_array_equal(model.score_index(test.user, test.item), predict(reference, test.user, test.item))
        assert get_method("retrain").exact
