"""MF and LightGCN: graph normalisation, determinism, and real-data quality under the IFRU protocol."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recunlearn.data import ifru_protocol
from recunlearn.errors import ConfigError
from recunlearn.evaluate import roc_auc
from recunlearn.models import LightGCNConfig, MFConfig, build_model
from recunlearn.models.graph import normalized_adjacency
from recunlearn.testing import FAST_TRAIN
from recunlearn.train import TrainConfig, fit_model, predict, resolve_device
from recunlearn.train.loop import BPR_LR
from recunlearn.train.ranking import RankingTask


def test_normalized_adjacency_matches_definition():
    user, item = np.array([0, 0, 1]), np.array([0, 1, 1])
    dense = normalized_adjacency(2, 2, user, item).to_dense().numpy()
    a = np.zeros((4, 4))
    for u, i in zip(user, item):
        a[u, 2 + i] = a[2 + i, u] = 1
    d = a.sum(1) ** -0.5
    np.testing.assert_allclose(dense, d[:, None] * a * d[None, :], rtol=1e-6)


def test_lightgcn_uses_only_positive_edges_and_forgets_removed_ones(tiny_split):
    train = tiny_split.train
    model = build_model(LightGCNConfig(), train, seed=0)
    n_edges = int(model.adjacency.to_dense().ne(0).sum()) // 2
    assert n_edges == len(np.unique(train.positives().pair_keys))
    model.set_graph(train.drop(train.user == 0))
    dense = model.adjacency.to_dense()
    assert dense[0].abs().sum() == 0, "user 0's edges are gone from the graph it scores with"


@pytest.mark.parametrize("config", [MFConfig(), LightGCNConfig(n_layers=2)])
def test_training_is_deterministic_given_the_seed(tiny_split, config):
    train_config = TrainConfig(**FAST_TRAIN)
    a = fit_model(config, tiny_split.train, tiny_split.valid, train_config).model
    b = fit_model(config, tiny_split.train, tiny_split.valid, train_config).model
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name
    c = fit_model(
        config, tiny_split.train, tiny_split.valid, train_config.model_copy(update={"seed": 1})
    ).model
    assert not torch.equal(a.user_emb.weight, c.user_emb.weight)


def test_early_stopping_restores_the_best_epoch(tiny_split):
    result = fit_model(
        MFConfig(),
        tiny_split.train,
        tiny_split.valid,
        TrainConfig(**{**FAST_TRAIN, "max_epochs": 30, "patience": 2}),
    )
    assert result.best_epoch <= result.epochs
    assert result.best_valid == pytest.approx(max(result.history))
    assert result.valid_metric == "auc"
    assert result.best_valid == pytest.approx(
        roc_auc(
            tiny_split.valid.label,
            predict(result.model, tiny_split.valid.user, tiny_split.valid.item),
        )
    )


@pytest.mark.parametrize("config, patience", [(MFConfig(), 10), (LightGCNConfig(), 20)])
def test_unset_patience_is_the_models_default(tiny_split, config, patience):
    """LightGCN waits longer than MF: its validation AUC plateaus before rising again."""
    settings = TrainConfig(**{**FAST_TRAIN, "max_epochs": 150, "lr": 0.05, "patience": None})
    result = fit_model(config, tiny_split.train, tiny_split.valid, settings)
    assert result.epochs < settings.max_epochs, "training should stop early on the tiny data"
    assert result.epochs == result.best_epoch + patience


def test_validation_with_one_label_class_is_refused(tiny_split):
    """Its AUC is undefined: no epoch would ever be best, and training would stop after `patience`."""
    valid = tiny_split.valid
    liked_only = valid.take(np.flatnonzero(valid.label > 0))
    from recunlearn.errors import DataError

    with pytest.raises(DataError, match="one label class only"):
        fit_model(MFConfig(), tiny_split.train, liked_only, TrainConfig(**FAST_TRAIN))
    with pytest.raises(DataError, match="no rows"):
        fit_model(MFConfig(), tiny_split.train, valid.take([]), TrainConfig(**FAST_TRAIN))


def test_bpr_loss_trains_and_early_stops_on_validation_recall(tiny_split):
    result = fit_model(
        MFConfig(), tiny_split.train, tiny_split.valid, TrainConfig(**{**FAST_TRAIN, "loss": "bpr"})
    )
    assert result.valid_metric == "recall"
    task = RankingTask(tiny_split.train, tiny_split.valid, 20)
    assert result.best_valid == pytest.approx(
        task.evaluate(lambda u: result.model.score_all(torch.as_tensor(u)))["recall@20"]
    )


def test_bpr_learning_rate_defaults_to_the_ranking_rate_unless_given():
    assert TrainConfig(loss="bpr").lr == BPR_LR
    assert TrainConfig(loss="bpr", lr=0.5).lr == 0.5
    assert TrainConfig().lr == 1e-3


def test_ranking_early_stopping_accepts_positive_only_validation(tiny_split):
    """Implicit feedback has no disliked rows: AUC is undefined there, a ranking is not."""
    valid = tiny_split.valid
    liked_only = valid.take(np.flatnonzero(valid.label > 0))
    result = fit_model(
        MFConfig(),
        tiny_split.train,
        liked_only,
        TrainConfig(**{**FAST_TRAIN, "valid_metric": "ndcg", "max_epochs": 5}),
    )
    assert result.valid_metric == "ndcg" and np.isfinite(result.best_valid)


def test_device_override(monkeypatch):
    monkeypatch.setenv("RECUNLEARN_DEVICE", "cpu")
    assert resolve_device().type == "cpu"
    if not torch.cuda.is_available():
        monkeypatch.setenv("RECUNLEARN_DEVICE", "cuda")
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device()
    monkeypatch.setenv("RECUNLEARN_DEVICE", "gpu0")  # not a torch device: one line, not a traceback
    with pytest.raises(ConfigError, match="device 'gpu0'"):
        resolve_device()


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.parametrize("config, floor", [(MFConfig(), 0.74), (LightGCNConfig(), 0.72)])
def test_real_data_quality_under_ifru_protocol(ml100k, config, floor):
    """ML-100K, rating > 3, 5-core, 60/20/20 (seed 1024): well above chance (measured: MF ~0.766, LightGCN ~0.738)."""
    split = ifru_protocol(ml100k)
    result = fit_model(config, split.train, split.valid, TrainConfig())
    test_auc = roc_auc(split.test.label, predict(result.model, split.test.user, split.test.item))
    print(
        f"{config.kind}: test AUC {test_auc:.4f} after {result.epochs} epochs ({result.seconds:.1f} s)"
    )
    assert test_auc > floor


@pytest.mark.parametrize("kind", ["mf", "lightgcn"])
def test_training_is_bitwise_reproducible_on_two_threads(ml100k, kind):
    """Advanced indexing's backward added a repeated row's gradients in a varying order on several
    CPU threads, so two fits with one seed gave different models; index_select's does not."""
    split = ifru_protocol(ml100k)
    config = MFConfig() if kind == "mf" else LightGCNConfig()
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        fits = [
            fit_model(
                config, split.train, None, TrainConfig(max_epochs=1, seed=0)
            ).model.state_dict()
            for _ in range(2)
        ]
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(fits[0][k], other[k]) for other in fits[1:] for k in fits[0])


def test_bpr_regularises_the_sampled_negatives_too(tiny_split):
    """LightGCN's BPR objective puts L2 on the user, positive and negative rows of a batch."""
    from recunlearn.train.loop import batch_loss
    from recunlearn.train.losses import bpr

    model = build_model(MFConfig(), tiny_split.train, 0)
    users, items = torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2])
    config = TrainConfig(loss="bpr", l2=0.5)
    loss = batch_loss(model, users, items, torch.ones(3), config, torch.Generator().manual_seed(7))
    neg = torch.randint(0, model.n_items, items.shape, generator=torch.Generator().manual_seed(7))
    u, i, j = model.user_emb.weight[users], model.item_emb.weight[items], model.item_emb.weight[neg]
    expected = (
        bpr((u * i).sum(-1), (u * j).sum(-1))
        + 0.5 * (u.pow(2).sum() + i.pow(2).sum() + j.pow(2).sum()) / 2 / 3
    )
    torch.testing.assert_close(loss, expected)


def test_devices_this_machine_lacks_are_config_errors():
    """mps on a Linux build, or a CUDA index past the devices, ended in a torch traceback mid-run."""
    for name in ("mps", f"cuda:{torch.cuda.device_count()}"):
        with pytest.raises(ConfigError, match="device"):
            resolve_device(name)


def test_bpr_negatives_avoid_the_users_positives():
    """LightGCN's code samples a negative the user has not liked; a uniform draw gave one of the user's
    own positives about 7% of the time on ML-100K (a 'negative' the loss then pushed down)."""
    from recunlearn.train.loop import sample_negatives

    n_items, users = 5, torch.tensor([0, 0, 1, 1] * 200)
    liked = torch.tensor(sorted([0 * n_items + i for i in (0, 1, 2, 3)] + [1 * n_items + 4]))
    negatives = sample_negatives(n_items, users, torch.Generator().manual_seed(0), liked)
    keys = users * n_items + negatives
    assert not torch.isin(keys, liked).any()
    assert (negatives[users == 0] == 4).all() and set((negatives[users == 1]).tolist()) == {
        0,
        1,
        2,
        3,
    }
    again = sample_negatives(n_items, users, torch.Generator().manual_seed(0), liked)
    assert torch.equal(negatives, again), "seeded"
