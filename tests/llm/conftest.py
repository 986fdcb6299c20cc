"""Tiny prompt samples and tiny random backbones (built offline from a config), shared by the LLM tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from recunlearn.data.tallrec import build_samples, split_samples, subsample
from recunlearn.models.llm.backbones import Backbone, create_tiny_model
from recunlearn.models.llm.scoring import collate, position_ids
from tests.conftest import make_tiny

FAST = {"lr": 1e-2, "batch_size": 16, "max_epochs": 2, "patience": 1}
"""Adapter training for tests: two epochs of 16-sample steps."""


@pytest.fixture(scope="session")
def all_samples():
    return build_samples(make_tiny(), history=4, max_samples=300)


@pytest.fixture(scope="session")
def sample_split(all_samples):
    train, valid, test = split_samples(all_samples)
    return subsample(train, 48, 0), subsample(valid, 20, 1), subsample(test, 24, 2)


@pytest.fixture(scope="session")
def tiny_causal(tmp_path_factory, all_samples):
    return str(
        create_tiny_model(
            tmp_path_factory.mktemp("tiny-causal"), all_samples.prompts(), kind="causal"
        )
    )


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory, all_samples):
    return str(
        create_tiny_model(
            tmp_path_factory.mktemp("tiny-encoder"), all_samples.prompts("input"), kind="encoder"
        )
    )


def method_config(backbone: str, **extra):
    return {
        "backbone": {"name": backbone, "max_length": 128},
        "train": FAST,
        "device": "cpu",
        **extra,
    }


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
