"""The embedded MiniLM backbone loads offline and trains an adapter step (one short test)."""

import numpy as np
import pytest

from recunlearn.models.llm.backbones import BackboneConfig, load_backbone
from recunlearn.models.llm.lora import LoRAConfig
from recunlearn.train.adapter import AdapterJob, AdapterTrainConfig, train_adapter


@pytest.mark.slow
def test_embedded_minilm_trains_an_adapter(sample_split):
    train, valid, _ = sample_split
    config = BackboneConfig(name="minilm", max_length=96)
    backbone = load_backbone(config)
    assert (
        backbone.kind == "encoder"
        and backbone.template == "input"
        and backbone.model_type == "bert"
    )
    job = AdapterJob(
        0,
        config,
        LoRAConfig(),
        AdapterTrainConfig(lr=1e-3, batch_size=16, max_epochs=1),
        0,
        train.take(np.arange(16)),
        valid.take(np.arange(8)),
        "cpu",
    )
    result = train_adapter(job)
    assert "head.weight" in result.adapter and result.adapter["head.weight"].shape == (1, 384)
    assert any(k.endswith("query.A") for k in result.adapter) and result.valid_logits.shape == (8,)
    assert np.abs(result.adapter["head.weight"].numpy()).max() > 0  # it moved from its zero start


@pytest.mark.parametrize("name", ["minilm", "tiny_encoder", "tiny_causal"])
def test_a_prompt_scores_the_same_whatever_shares_its_batch(name, sample_split, request):
    """Batches are left-padded: positions must count from each prompt's first token (an encoder
    numbering them from the first column would move a prompt's score with its batch's longest prompt)."""
    import torch

    from recunlearn.models.llm.scoring import collate, tokenize

    train, _, _ = sample_split
    backbone = load_backbone(
        BackboneConfig(
            name=name if name == "minilm" else request.getfixturevalue(name), max_length=128
        )
    )
    prompts = train.prompts(backbone.template)
    short, long = prompts[0], prompts[1] + " " + prompts[2]
    tokens = tokenize(backbone.tokenizer, [short, long], 128)
    assert len(tokens[1]) > len(tokens[0]) + 10, "the batch pads the short prompt"
    pad = backbone.tokenizer.pad_token_id
    with torch.no_grad():
        alone = backbone.scorer.hidden_states(*collate(tokens[:1], pad, torch.device("cpu")))[-1][
            0, -1
        ]
        batched = backbone.scorer.hidden_states(*collate(tokens, pad, torch.device("cpu")))[-1][
            0, -1
        ]
    assert torch.allclose(alone, batched, atol=1e-4), float((alone - batched).abs().max())
