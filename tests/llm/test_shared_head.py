"""The shared encoder head (``BackboneConfig.head="shared"``): one frozen head for every adapter and
method, so parameter-level mixing still equals peft's per-sample merges, forgetting stays exact, and
the head travels with every saved adapter."""

import copy
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from recunlearn.data import DeletionRequest
from recunlearn.errors import RecUnlearnError
from recunlearn.models.llm.backbones import BackboneConfig, fresh_scorer, load_backbone, shared_head
from recunlearn.models.llm.lora import (
    HEAD_FILE,
    LoRAConfig,
    build_mixture,
    load_adapter,
    load_peft_adapter,
    save_peft_adapter,
    target_paths,
)
from recunlearn.models.llm.scoring import collate, predict_logits, tokenize
from recunlearn.train.adapter import AdapterJob, train_adapter
from recunlearn.unlearn import Unlearner, get_method
from tests.llm.conftest import method_config

K = 3


def shared_config(backbone: str, **extra):
    config = method_config(backbone, **extra)
    config["backbone"] = {**config["backbone"], "head": "shared", "seed": 5}
    return config


@pytest.fixture(scope="module")
def setup(tiny_encoder, sample_split):
    backbone = load_backbone(
        BackboneConfig(name=tiny_encoder, max_length=128, head="shared", seed=5)
    )
    lora = LoRAConfig(r=4, alpha=8)
    paths = target_paths(backbone.scorer, lora)
    gen = torch.Generator().manual_seed(0)
    adapters = []
    for _ in range(
        K
    ):  # random non-zero adapters (trained ones start with B = 0); no head: it is the backbone's
        adapters.append(
            {
                f"{p}.{part}": torch.randn(*shape, generator=gen) * 0.3
                for p in paths
                for part, shape in (
                    ("A", (4, backbone.scorer.get_submodule(p).in_features)),
                    ("B", (backbone.scorer.get_submodule(p).out_features, 4)),
                )
            }
        )
    tokens = tokenize(backbone.tokenizer, sample_split[2].prompts("input")[:5], 128)
    weights = torch.softmax(torch.randn(len(tokens), K, generator=gen) * 2, dim=1)
    return backbone, lora, paths, adapters, tokens, weights


def test_the_shared_head_is_a_frozen_function_of_the_seed(setup, tiny_encoder):
    backbone = setup[0]
    head = backbone.scorer.head
    assert backbone.scorer.head_shared and not head.weight.requires_grad
    assert torch.equal(head.weight, shared_head(backbone.config, head.in_features)[0])
    assert torch.isclose(head.weight.norm(), torch.tensor(backbone.config.head_norm))
    torch.manual_seed(123)  # the global RNG's state does not reach it
    again = load_backbone(
        BackboneConfig(name=tiny_encoder, max_length=128, head="shared", seed=5, dtype="float32")
    )
    assert torch.equal(again.scorer.head.weight, head.weight)
    other = shared_head(backbone.config.model_copy(update={"seed": 6}), head.in_features)[0]
    assert not torch.allclose(other, head.weight)


@pytest.mark.parametrize("mode", ["ND", "D"])
def test_batched_mixture_with_the_shared_head_equals_peft_merge_per_sample(setup, mode):
    from peft import get_peft_model
    from peft.utils import set_peft_model_state_dict

    backbone, lora, paths, adapters, tokens, weights = setup
    scorer = fresh_scorer(backbone)
    mixture = build_mixture(scorer, paths, lora.r, lora.scaling, K, mode)
    assert scorer.head is not backbone.scorer.head and torch.equal(
        scorer.head.weight, backbone.scorer.head.weight
    )
    for k, adapter in enumerate(adapters):
        load_adapter(scorer, k, adapter)
    mixture.set(weights=weights)
    ids, mask = collate(tokens, backbone.tokenizer.pad_token_id, torch.device("cpu"))
    with torch.no_grad():
        batched = scorer(ids, mask).numpy()
    for b in range(len(tokens)):
        w = weights[b].tolist()
        model = get_peft_model(
            copy.deepcopy(backbone.scorer), lora.peft_config("bert"), adapter_name="a0"
        )
        for k, adapter in enumerate(adapters):
            if k:
                model.add_adapter(f"a{k}", lora.peft_config("bert"))
            state = {
                f"base_model.model.{key[:-2]}.lora_{key[-1]}.weight": v
                for key, v in adapter.items()
            }
            set_peft_model_state_dict(model, state, adapter_name=f"a{k}")
        # peft 'cat' = sum_k w_k B_k A_k (ND); 'linear' scales A and B by sqrt(w), so squared weights give D
        model.base_model.add_weighted_adapter(
            [f"a{k}" for k in range(K)],
            w if mode == "ND" else [x * x for x in w],
            "merged",
            combination_type="cat" if mode == "ND" else "linear",
        )
        model.base_model.set_adapter("merged")
        model.eval()
        one, one_mask = collate([tokens[b]], backbone.tokenizer.pad_token_id, torch.device("cpu"))
        with torch.no_grad():
            assert abs(batched[b] - float(model.base_model.model(one, one_mask)[0])) < 1e-5
    plain = predict_logits(
        backbone.scorer, tokens, backbone.tokenizer.pad_token_id, torch.device("cpu")
    )
    assert np.abs(batched - plain).max() > 1e-3  # the LoRAs alone move the shared head's logit


def test_forgetting_with_the_shared_head_is_bitwise_exact(tiny_encoder, sample_split):
    train, valid, test = sample_split
    apa = get_method("apa")(shared_config(tiny_encoder, n_shards=2, neighbours=5)).fit(train, valid)
    head = apa.scorer.head.weight.clone()
    assert all(
        not any(k.startswith("head.") for k in a) for a in apa.adapters
    )  # no adapter holds the head
    before = [{k: v.clone() for k, v in a.items()} for a in apa.adapters]
    shard_ids = [set(train.ids[apa.assignment == k]) for k in range(2)]
    victim = sorted(shard_ids[1])[3]
    report = apa.forget(DeletionRequest(samples=[victim]))
    assert report.details["retrained_adapters"] == [1]
    assert all(torch.equal(before[0][k], apa.adapters[0][k]) for k in before[0])
    keep = np.array([s in shard_ids[1] and s != victim for s in train.ids])
    scratch = train_adapter(
        AdapterJob(
            1,
            apa.config.backbone,
            apa.config.lora,
            apa.config.train,
            apa.config.train.seed + 1,
            train.take(keep),
            valid,
            "cpu",
        )
    )
    assert scratch.adapter.keys() == apa.adapters[1].keys()
    assert all(torch.equal(scratch.adapter[k], apa.adapters[1][k]) for k in scratch.adapter)
    assert not all(torch.equal(before[1][k], apa.adapters[1][k]) for k in before[1])
    assert np.array_equal(scratch.valid_logits, apa.valid_logits[1])
    assert torch.equal(apa.scorer.head.weight, head), (
        "training and forgetting never move the shared head"
    )


def test_every_method_reads_the_same_shared_head(tiny_encoder, sample_split):
    train, valid, _ = sample_split
    heads = []
    for name in ("llm-retrain", "llm-sisa", "apa"):
        method = get_method(name)(
            shared_config(tiny_encoder, **({} if name == "llm-retrain" else {"n_shards": 2}))
        )
        method.train, method.valid = train, valid
        method._setup()
        heads.append(method.scorer.head.weight)
    assert all(torch.equal(heads[0], h) for h in heads[1:])


def test_saved_folders_carry_the_shared_head_and_refuse_another(
    tiny_encoder, sample_split, tmp_path
):
    from peft import PeftModel
    from transformers import AutoModel

    train, valid, test = sample_split
    sisa = get_method("llm-sisa")(shared_config(tiny_encoder, n_shards=2)).fit(train, valid)
    folder = sisa.save(tmp_path / "sisa")
    assert (
        json.loads((folder / "unlearner.json").read_text())["config"]["backbone"]["head"]
        == "shared"
    )
    head = load_file(str(folder / "adapters" / "adapter-1" / HEAD_FILE))
    assert torch.equal(head["weight"], sisa.scorer.head.weight)
    assert np.array_equal(Unlearner.load(folder).score(test), sisa.score(test))
    # a peft user: the Hugging Face model, the LoRA file, and the head beside it give our adapter's logit
    model = PeftModel.from_pretrained(
        AutoModel.from_pretrained(tiny_encoder), str(folder / "adapters" / "adapter-1")
    )
    ours = sisa.adapter_logits(test.take([0]))[1, 0]
    ids = torch.tensor(tokenize(sisa.backbone.tokenizer, test.take([0]).prompts("input"), 128))
    with torch.no_grad():
        theirs = float(
            model.eval()(input_ids=ids).last_hidden_state.mean(1) @ head["weight"].T + head["bias"]
        )
    assert abs(theirs - ours) < 1e-5
    save_file(
        {"weight": head["weight"] * 2, "bias": head["bias"]},
        str(folder / "adapters" / "adapter-1" / HEAD_FILE),
    )
    with pytest.raises(RecUnlearnError, match="shared head is not this backbone's"):
        Unlearner.load(folder)


def test_a_saved_adapter_round_trips_without_a_head_key(setup, tmp_path):
    backbone, lora, _, adapters, _, _ = setup
    folder = save_peft_adapter(tmp_path / "a", adapters[0], lora, backbone.scorer, "unused")
    back = load_peft_adapter(folder, backbone.scorer)
    assert back.keys() == adapters[0].keys() and all(
        torch.equal(back[k], adapters[0][k]) for k in back
    )
