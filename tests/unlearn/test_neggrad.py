"""The neggrad baseline passes the shared conformance tests."""

from recunlearn.testing import UnlearnerConformance


class TestNegGrad(UnlearnerConformance):
    method = "neggrad"


def test_neggrad_on_bpr_climbs_only_trained_rows_and_is_reproducible(tiny_split):
    """BPR trains on the positive rows only: forgetting negative rows changes nothing, and the ascent's
    sampled negatives come from the seed (they came from torch's global state)."""
    import numpy as np
    import torch

    from recunlearn.data import DeletionRequest
    from recunlearn.testing import FAST_TRAIN
    from recunlearn.unlearn import get_method

    train = tiny_split.train
    settings = {"train": {**FAST_TRAIN, "loss": "bpr"}}
    original = get_method("retrain")(settings).fit(train, tiny_split.valid)
    negatives = DeletionRequest.from_rows(train, np.flatnonzero(train.label == 0)[:5])
    untouched = get_method("neggrad").adopt(original, settings)
    report = untouched.forget(negatives)
    assert report.details["steps"] == 0
    assert all(
        torch.equal(a, b)
        for a, b in zip(untouched.model.state_dict().values(), original.model.state_dict().values())
    )
    positives = DeletionRequest.from_rows(train, np.flatnonzero(train.label > 0)[:5])
    runs = [get_method("neggrad").adopt(original, settings) for _ in range(2)]
    for run in runs:
        torch.manual_seed(len(runs) + id(run) % 1000)  # the global state must not matter
        run.forget(positives)
    assert all(
        torch.equal(a, b)
        for a, b in zip(runs[0].model.state_dict().values(), runs[1].model.state_dict().values())
    )
