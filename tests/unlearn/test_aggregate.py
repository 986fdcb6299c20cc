import numpy as np
import pytest
import torch

from recunlearn.errors import ConfigError
from recunlearn.models.config import MFConfig, build_model
from recunlearn.testing import FAST_TRAIN
from recunlearn.unlearn import get_method
from recunlearn.unlearn.aggregate import (
    AttentionConfig,
    AverageConfig,
    WeightedConfig,
    build_aggregator,
    shard_probabilities,
)


def planted_models(data, n_shards=3, good=0):
    """Shard models whose user/item tables are random, except shard ``good`` which carries the data's
    structure (from a model trained on all of it): aggregators should lean on it."""
    from recunlearn.train.loop import TrainConfig, fit_model

    trained = fit_model(
        MFConfig(dim=8), data, None, TrainConfig(**{**FAST_TRAIN, "max_epochs": 30})
    ).model
    models = []
    for k in range(n_shards):
        model = build_model(MFConfig(dim=8), data, seed=100 + k)
        if k == good:
            model.load_state_dict(trained.state_dict())
        else:
            with torch.no_grad():
                model.user_emb.weight.normal_(0, 1.0, generator=torch.Generator().manual_seed(k))
                model.item_emb.weight.normal_(
                    0, 1.0, generator=torch.Generator().manual_seed(10 + k)
                )
        models.append(model.eval())
    return models


def test_average_is_the_mean_of_shard_probabilities_and_skips_empty_shards(tiny_split):
    models = planted_models(tiny_split.train)
    test = tiny_split.test
    aggregator = build_aggregator(AverageConfig())
    per_shard = shard_probabilities(models, test.user, test.item)
    np.testing.assert_allclose(
        aggregator.score(models, test.user, test.item), per_shard.mean(0), rtol=1e-6
    )
    with_empty = [models[0], None, models[2]]
    np.testing.assert_allclose(
        aggregator.score(with_empty, test.user, test.item), per_shard[[0, 2]].mean(0), rtol=1e-6
    )
    grid = aggregator.score_all(with_empty, np.array([0, 1]), tiny_split.train.n_items)
    np.testing.assert_allclose(
        grid[1, test.item[test.user == 1]],
        aggregator.score(with_empty, test.user[test.user == 1], test.item[test.user == 1]),
        rtol=1e-5,
    )


def test_weighted_aggregator_prefers_the_shard_with_low_validation_error(tiny_split):
    models = planted_models(tiny_split.train, good=1)
    aggregator = build_aggregator(WeightedConfig(tau=20.0))
    aggregator.fit(models, tiny_split.train, tiny_split.valid, range(3))
    users = np.unique(tiny_split.valid.user)
    weights = aggregator.weights(users, models)
    np.testing.assert_allclose(weights.sum(1), 1.0, rtol=1e-9)
    assert (weights.argmax(1) == 1).mean() > 0.6
    test = tiny_split.test
    from recunlearn.evaluate import roc_auc

    averaged = build_aggregator(AverageConfig()).score(models, test.user, test.item)
    assert roc_auc(test.label, aggregator.score(models, test.user, test.item)) > roc_auc(
        test.label, averaged
    )
    uniform = build_aggregator(WeightedConfig(tau=0.0))
    uniform.fit(models, tiny_split.train, tiny_split.valid, range(3))
    np.testing.assert_allclose(
        uniform.score(models, test.user, test.item),
        build_aggregator(AverageConfig()).score(models, test.user, test.item),
        rtol=1e-5,
    )
    with_empty = [models[0], models[1], None]
    aggregator.fit(with_empty, tiny_split.train, tiny_split.valid, [2])
    assert np.all(aggregator.weights(users, with_empty)[:, 2] == 0)


def test_attention_aggregator_learns_to_weight_the_informative_shard(tiny_split):
    from recunlearn.evaluate import roc_auc

    models = planted_models(tiny_split.train, good=2)
    test = tiny_split.test
    aggregator = build_aggregator(AttentionConfig(epochs=30, batch_size=128, lr=0.02))
    info = aggregator.fit(models, tiny_split.train, tiny_split.valid, range(3))
    assert info["training_rows"] == len(tiny_split.train)
    learned = roc_auc(test.label, aggregator.score(models, test.user, test.item))
    averaged = roc_auc(
        test.label, build_aggregator(AverageConfig()).score(models, test.user, test.item)
    )
    assert learned > averaged
    again = build_aggregator(AttentionConfig(epochs=30, batch_size=128, lr=0.02))
    again.fit(models, tiny_split.train, tiny_split.valid, range(3))
    for name, value in aggregator.tensors().items():
        assert torch.equal(value, again.tensors()[name]), (
            "same seed and inputs must give the same aggregator"
        )
    grid = aggregator.score_all(models, np.array([3]), tiny_split.train.n_items)
    np.testing.assert_allclose(
        grid[0, test.item[test.user == 3]],
        aggregator.score(models, test.user[test.user == 3], test.item[test.user == 3]),
        rtol=1e-5,
        atol=1e-6,
    )


def test_aggregator_config_is_validated():
    with pytest.raises(ConfigError, match="aggregator"):
        get_method("sisa")({"aggregator": {"kind": "median"}})
    with pytest.raises(ConfigError, match="tau"):
        get_method("sisa")({"aggregator": {"kind": "weighted", "tau": -1}})


def test_sisa_with_attention_saves_and_loads(tiny_split, tmp_path):
    from recunlearn.unlearn import Unlearner

    config = {
        "n_shards": 2,
        "train": FAST_TRAIN,
        "aggregator": {"kind": "attention", "epochs": 2, "batch_size": 128},
    }
    model = get_method("sisa")(config).fit(tiny_split.train, tiny_split.valid)
    loaded = Unlearner.load(model.save(tmp_path / "m"))
    test = tiny_split.test
    np.testing.assert_array_equal(
        loaded.score_index(test.user, test.item), model.score_index(test.user, test.item)
    )
