"""Every method on prompt samples passes the shared conformance tests (recunlearn.testing)."""

import numpy as np

from recunlearn.data import DeletionRequest
from recunlearn.testing import LLMConformance


class TestLLMRetrain(LLMConformance):
    method = "llm-retrain"


class TestAPA(LLMConformance):
    method = "apa"
    config = {"n_shards": 2, "neighbours": 5}


class TestLLMSISA(LLMConformance):
    method = "llm-sisa"
    config = {"n_shards": 2}


class TestLLMRecEraser(LLMConformance):
    method = "llm-receraser"
    config = {"n_shards": 2}


class TestLLMGraphEraser(LLMConformance):
    method = "llm-grapheraser"
    config = {"n_shards": 2}


class TestLLMNegGrad(LLMConformance):
    method = "llm-neggrad"

    def test_ascent_raises_the_removed_samples_loss(self, settings, samples):
        model = self.fresh(settings, samples)
        removed = model.train.take(np.arange(4))
        before = _loss(model.score(removed), removed.label)
        model.forget(DeletionRequest(samples=removed.ids.tolist()))
        assert _loss(model.score(removed), removed.label) > before


def _loss(probabilities, labels):
    p = np.clip(probabilities.astype(np.float64), 1e-12, 1 - 1e-12)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))
