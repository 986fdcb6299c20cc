"""The representation settings of a backbone: combinations that would silently give useless
representations, or index past the model's layers, are refused with a clear error."""

import numpy as np
import pytest
import torch

from recunlearn.errors import ConfigError
from recunlearn.models.llm.backbones import BackboneConfig, load_backbone
from recunlearn.models.llm.scoring import representations, tokenize
from recunlearn.unlearn import get_method
from tests.llm.conftest import method_config


def test_last_token_pooling_needs_a_layer_above_the_embeddings(tiny_causal, sample_split):
    """Every prompt ends with the same template token: its embedding cannot tell prompts apart."""
    with pytest.raises(
        ValueError, match="pooling='last' needs a representation_layer other than 0"
    ):
        BackboneConfig(pooling="last")
    with pytest.raises(ConfigError, match="pooling='last' needs"):
        get_method("apa")(
            method_config(tiny_causal, n_shards=2)
            | {"backbone": {"name": tiny_causal, "pooling": "last"}}
        )
    backbone = load_backbone(
        BackboneConfig(name=tiny_causal, max_length=128, representation_layer=-1, pooling="last")
    )
    tokens = tokenize(backbone.tokenizer, sample_split[0].prompts()[:10], 128)
    reps = representations(
        backbone.scorer, tokens, backbone.tokenizer.pad_token_id, torch.device("cpu"), -1, "last"
    )
    assert len(np.unique(reps.round(6), axis=0)) == 10


@pytest.mark.parametrize("layer", [3, -4])
def test_representation_layer_is_checked_against_the_model(layer, tiny_causal, sample_split):
    """The tiny model has 2 layers, so 3 hidden states: -3..2 are valid (was a raw IndexError)."""
    backbone = load_backbone(BackboneConfig(name=tiny_causal, max_length=128))
    tokens = tokenize(backbone.tokenizer, sample_split[0].prompts()[:3], 128)
    pad = backbone.tokenizer.pad_token_id
    for valid in (2, -3):
        assert representations(backbone.scorer, tokens, pad, torch.device("cpu"), valid).shape == (
            3,
            32,
        )
    with pytest.raises(
        ConfigError, match=f"representation_layer {layer} is out of range for a model with 2 layers"
    ):
        representations(backbone.scorer, tokens, pad, torch.device("cpu"), layer)
