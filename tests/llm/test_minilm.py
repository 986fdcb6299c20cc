"""The embedded MiniLM backbone loads offline and trains an adapter step (one short test)."""

import numpy as np
import pytest

from recunlearn.models.llm.backbones import BackboneConfig, load_backbone
from recunlearn.models.llm.lora import LoRAConfig
from recunlearn.models.llm.train import AdapterJob, AdapterTrainConfig, train_adapter


@pytest.mark.slow
def test_embedded_minilm_trains_an_adapter(sample_split):
    train, valid, _ = sample_split
    config = BackboneConfig(name="minilm", max_length=96)
    backbone = load_backbone(config)
    assert backbone.kind == "encoder" and backbone.template == "input" and backbone.model_type == "bert"
    job = AdapterJob(0, config, LoRAConfig(), AdapterTrainConfig(lr=1e-3, batch_size=16, max_epochs=1),
                     0, train.take(np.arange(16)), valid.take(np.arange(8)), "cpu")
    result = train_adapter(job)
    assert "head.weight" in result.adapter and result.adapter["head.weight"].shape == (1, 384)
    assert any(k.endswith("query.A") for k in result.adapter) and result.valid_logits.shape == (8,)
    assert np.abs(result.adapter["head.weight"].numpy()).max() > 0  # it moved from its zero start
