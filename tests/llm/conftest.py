"""Tiny prompt samples and tiny random backbones (built offline from a config), shared by the LLM tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from recunlearn.models.llm.backbones import Backbone
from recunlearn.models.llm.scoring import collate, position_ids
from recunlearn.testing import llm_settings, tiny_backbone, tiny_sample_split, tiny_samples


@pytest.fixture(scope="session")
def all_samples():
    return tiny_samples()


@pytest.fixture(scope="session")
def sample_split(all_samples):
    return tiny_sample_split(all_samples)


@pytest.fixture(scope="session")
def tiny_causal(tmp_path_factory, all_samples):
    return tiny_backbone(tmp_path_factory.mktemp("tiny-causal"), all_samples)


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory, all_samples):
    return tiny_backbone(tmp_path_factory.mktemp("tiny-encoder"), all_samples, kind="encoder")


method_config = llm_settings
"""Settings of an LLM method on a test backbone (the conformance suite's)."""


def plain_peft_yes_no(folder: Path, backbone: Backbone, tokens: list[list[int]]) -> np.ndarray:
    """Yes/No logits of a saved adapter as a peft user gets them: the Hugging Face model its config
    names, with the folder applied by ``PeftModel.from_pretrained`` (nothing of recunlearn)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"]
    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(base), str(folder)
    ).eval()
    ids, mask = collate(tokens, backbone.tokenizer.pad_token_id, torch.device("cpu"))
    with torch.no_grad():
        last = model(input_ids=ids, attention_mask=mask, position_ids=position_ids(mask)).logits[
            :, -1
        ]
    return (last[:, backbone.scorer.yes_id] - last[:, backbone.scorer.no_id]).numpy()
