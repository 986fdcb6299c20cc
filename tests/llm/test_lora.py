"""The mixture-of-LoRA layer against peft: per-sample batched aggregation equals merging per sample, and
saved adapters load in plain peft onto the Hugging Face model they name."""

import copy
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from recunlearn.errors import RecUnlearnError
from recunlearn.models.llm.backbones import BackboneConfig, fresh_scorer, load_backbone
from recunlearn.models.llm.lora import (
    HEAD_FILE,
    LoRAConfig,
    build_mixture,
    load_adapter,
    load_peft_adapter,
    merge_adapters,
    save_peft_adapter,
    target_paths,
)
from recunlearn.models.llm.scoring import collate, predict_logits, tokenize
from tests.llm.conftest import plain_peft_yes_no

K = 3


@pytest.fixture(scope="module")
def setup(tiny_causal, sample_split):
    backbone = load_backbone(BackboneConfig(name=tiny_causal, max_length=128))
    lora = LoRAConfig(r=4, alpha=8)
    paths = target_paths(backbone.scorer, lora)
    gen = torch.Generator().manual_seed(0)
    adapters = []
    for _ in range(K):  # random non-zero adapters (trained ones start with B = 0)
        adapter = {}
        for p in paths:
            layer = backbone.scorer.get_submodule(p)
            adapter[f"{p}.A"] = torch.randn(4, layer.in_features, generator=gen) * 0.3
            adapter[f"{p}.B"] = torch.randn(layer.out_features, 4, generator=gen) * 0.3
        adapters.append(adapter)
    tokens = tokenize(backbone.tokenizer, sample_split[2].prompts()[:5], 128)
    weights = torch.softmax(torch.randn(len(tokens), K, generator=gen) * 2, dim=1)
    return backbone, lora, paths, adapters, tokens, weights


def _mixture_scores(backbone, lora, paths, adapters, tokens, weights, mode):
    scorer = fresh_scorer(backbone)
    mixture = build_mixture(scorer, paths, lora.r, lora.scaling, K, mode)
    for k, adapter in enumerate(adapters):
        load_adapter(scorer, k, adapter)
    mixture.set(weights=weights)
    ids, mask = collate(tokens, backbone.tokenizer.pad_token_id, torch.device("cpu"))
    with torch.no_grad():
        return scorer(ids, mask).numpy()


def _peft_merged_score(backbone, lora, adapters, token_ids, weights, combination):
    from peft import get_peft_model
    from peft.utils import set_peft_model_state_dict

    model = get_peft_model(
        copy.deepcopy(backbone.scorer), lora.peft_config("llama"), adapter_name="a0"
    )
    for k, adapter in enumerate(adapters):
        if k:
            model.add_adapter(f"a{k}", lora.peft_config("llama"))
        state = {
            f"base_model.model.{key[:-2]}.lora_{key[-1]}.weight": v for key, v in adapter.items()
        }
        set_peft_model_state_dict(model, state, adapter_name=f"a{k}")
    model.base_model.add_weighted_adapter(
        [f"a{k}" for k in range(K)], weights, "merged", combination_type=combination
    )
    model.base_model.set_adapter("merged")
    model.eval()
    ids, mask = collate([token_ids], backbone.tokenizer.pad_token_id, torch.device("cpu"))
    with torch.no_grad():
        return float(model.base_model.model(ids, mask)[0])


@pytest.mark.parametrize("mode", ["ND", "D"])
def test_batched_mixture_equals_peft_merge_per_sample(setup, mode):
    backbone, lora, paths, adapters, tokens, weights = setup
    batched = _mixture_scores(backbone, lora, paths, adapters, tokens, weights, mode)
    for b in range(len(tokens)):
        w = weights[b].tolist()
        # peft 'cat' = sum_k w_k B_k A_k (ND); peft 'linear' scales A and B by sqrt(w), so squared weights give D
        merged = _peft_merged_score(
            backbone,
            lora,
            adapters,
            tokens[b],
            w if mode == "ND" else [x * x for x in w],
            "cat" if mode == "ND" else "linear",
        )
        assert abs(batched[b] - merged) < 1e-5
    plain = predict_logits(
        backbone.scorer, tokens, backbone.tokenizer.pad_token_id, torch.device("cpu")
    )
    assert np.abs(batched - plain).max() > 1e-3  # the adapters do change the scores


@pytest.mark.parametrize("mode", ["ND", "D"])
def test_static_merge_equals_mixture_for_one_weight_vector(setup, mode):
    backbone, lora, paths, adapters, tokens, weights = setup
    w = weights[0]
    batched = _mixture_scores(
        backbone, lora, paths, adapters, tokens, w.expand(len(tokens), K), mode
    )
    merged, rank, alpha = merge_adapters(adapters, w.tolist(), mode, lora.scaling)
    scorer = fresh_scorer(backbone)
    mixture = build_mixture(scorer, paths, rank, alpha / rank, 1, mode)
    load_adapter(scorer, 0, merged)
    mixture.set(single=0)
    ids, mask = collate(tokens, backbone.tokenizer.pad_token_id, torch.device("cpu"))
    with torch.no_grad():
        assert np.abs(scorer(ids, mask).numpy() - batched).max() < 1e-5


def test_saved_adapter_loads_in_plain_peft_onto_the_hf_model(setup, tiny_causal, tmp_path):
    """Keys were relative to our scorer (``lm.model...``): peft then matched no layer and silently ran
    the bare model."""
    backbone, lora, paths, adapters, tokens, _ = setup
    folder = save_peft_adapter(
        tmp_path / "adapter", adapters[1], lora, backbone.scorer, tiny_causal
    )
    back = load_peft_adapter(folder, backbone.scorer)
    assert back.keys() == adapters[1].keys() and all(
        torch.equal(back[k], adapters[1][k]) for k in back
    )
    one_hot = torch.zeros(len(tokens), K)
    one_hot[:, 1] = 1.0
    ours = _mixture_scores(backbone, lora, paths, adapters, tokens, one_hot, "ND")
    assert np.abs(plain_peft_yes_no(folder, backbone, tokens) - ours).max() < 1e-5
    plain = predict_logits(
        backbone.scorer, tokens, backbone.tokenizer.pad_token_id, torch.device("cpu")
    )
    assert np.abs(plain - ours).max() > 1e-3  # the adapter does change the scores


def test_merged_nd_adapter_saves_with_its_own_rank(setup, tiny_causal, tmp_path):
    """ND concatenates ranks (K r); the file's config used to keep r, so peft refused the tensors."""
    backbone, lora, paths, adapters, tokens, weights = setup
    w = weights[0]
    merged, rank, alpha = merge_adapters(adapters, w.tolist(), "ND", lora.scaling)
    folder = save_peft_adapter(tmp_path / "merged", merged, lora, backbone.scorer, tiny_causal)
    document = json.loads((folder / "adapter_config.json").read_text())
    assert (document["r"], document["lora_alpha"]) == (rank, alpha) == (K * lora.r, K * lora.alpha)
    back = load_peft_adapter(folder, backbone.scorer)
    assert all(torch.equal(back[k], merged[k]) for k in merged)
    mixed = _mixture_scores(backbone, lora, paths, adapters, tokens, w.expand(len(tokens), K), "ND")
    assert np.abs(plain_peft_yes_no(folder, backbone, tokens) - mixed).max() < 1e-5


def _encoder_adapter(backbone, lora):
    gen = torch.Generator().manual_seed(1)
    adapter = {}
    for p in target_paths(backbone.scorer, lora):
        layer = backbone.scorer.get_submodule(p)
        adapter[f"{p}.A"] = torch.randn(lora.r, layer.in_features, generator=gen) * 0.3
        adapter[f"{p}.B"] = torch.randn(layer.out_features, lora.r, generator=gen) * 0.3
    adapter["head.weight"] = torch.randn(1, 32, generator=gen)
    adapter["head.bias"] = torch.randn(1, generator=gen)
    return adapter


def test_encoder_adapter_loads_in_peft_with_its_head_beside_it(
    tiny_encoder, sample_split, tmp_path
):
    """The LoRA file fits the plain BERT model; the head (no module of that model) is a separate file."""
    from peft import PeftModel
    from transformers import AutoModel

    backbone = load_backbone(BackboneConfig(name=tiny_encoder, max_length=128))
    lora = LoRAConfig(r=4, alpha=8)
    adapter = _encoder_adapter(backbone, lora)
    folder = save_peft_adapter(tmp_path / "adapter", adapter, lora, backbone.scorer, tiny_encoder)
    assert not any("head" in k for k in load_file(str(folder / "adapter_model.safetensors")))
    back = load_peft_adapter(folder, backbone.scorer)
    assert back.keys() == adapter.keys() and all(torch.equal(back[k], adapter[k]) for k in back)
    scorer = fresh_scorer(backbone)
    build_mixture(scorer, target_paths(scorer, lora), lora.r, lora.scaling, 1).set(single=0)
    load_adapter(scorer, 0, back)
    model = PeftModel.from_pretrained(AutoModel.from_pretrained(tiny_encoder), str(folder)).eval()
    head = load_file(str(folder / HEAD_FILE))
    for tokens in tokenize(backbone.tokenizer, sample_split[2].prompts("input")[:3], 128):
        ids = torch.tensor([tokens])
        with torch.no_grad():
            pooled = model(input_ids=ids).last_hidden_state.mean(1)
            theirs = float(pooled @ head["weight"].T + head["bias"])
            ours = float(scorer(ids, torch.ones_like(ids)))
        assert abs(theirs - ours) < 1e-5


def test_an_adapter_layer_the_backbone_lacks_is_named(tiny_encoder, tmp_path):
    backbone = load_backbone(BackboneConfig(name=tiny_encoder, max_length=128))
    save_file(
        {"base_model.model.decoder.q.lora_A.weight": torch.zeros(4, 32)},
        str(tmp_path / "adapter_model.safetensors"),
    )
    with pytest.raises(
        RecUnlearnError, match="adapter layer 'decoder.q' is not in the bert backbone"
    ):
        load_peft_adapter(tmp_path, backbone.scorer)


def test_predict_logits_batches_by_length_and_keeps_order_and_weights(setup):
    """Prompts are batched shortest first; each logit lands at its prompt's position and is scored with
    that prompt's own mixture weights (``before_batch`` gets the batch's positions)."""
    backbone, lora, paths, adapters, tokens, weights = setup
    tokens = [
        t[: len(t) - 7 * i] for i, t in enumerate(tokens)
    ]  # lengths differ: sorting reorders them
    assert len({len(t) for t in tokens}) == len(tokens)
    scorer = fresh_scorer(backbone)
    mixture = build_mixture(scorer, paths, lora.r, lora.scaling, K, "ND")
    for k, adapter in enumerate(adapters):
        load_adapter(scorer, k, adapter)
    seen = []

    def before(rows):
        seen.append(rows.tolist())
        mixture.set(weights=weights[rows])

    batched = predict_logits(
        scorer, tokens, backbone.tokenizer.pad_token_id, torch.device("cpu"), 2, before
    )
    assert seen[0] == [4, 3] and sorted(sum(seen, [])) == list(range(len(tokens)))
    for b in range(len(tokens)):
        alone = _mixture_scores(
            backbone, lora, paths, adapters, [tokens[b]], weights[b : b + 1], "ND"
        )
        assert abs(batched[b] - alone[0]) < 1e-5


def test_an_adapter_for_other_target_modules_is_refused_by_name(setup):
    """Loading it into a mixture with more layers raised a bare KeyError."""
    backbone, lora, paths, adapters, _, _ = setup
    scorer = fresh_scorer(backbone)
    build_mixture(scorer, paths, lora.r, lora.scaling, K, "ND")
    partial = {k: v for k, v in adapters[0].items() if not k.startswith(paths[0] + ".")}
    with pytest.raises(RecUnlearnError, match="other LoRA target modules"):
        load_adapter(scorer, 0, partial)
