"""The mixture-of-LoRA layer against peft: per-sample batched aggregation equals merging per sample."""

import copy

import numpy as np
import pytest
import torch

from recunlearn.models.llm.backbones import BackboneConfig, fresh_scorer, load_backbone
from recunlearn.models.llm.lora import (
    LoRAConfig,
    build_mixture,
    load_adapter,
    load_peft_adapter,
    merge_adapters,
    save_peft_adapter,
    target_paths,
)
from recunlearn.models.llm.scoring import collate, predict_logits, tokenize

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

    model = get_peft_model(copy.deepcopy(backbone.scorer), lora.peft_config("llama"), adapter_name="a0")
    for k, adapter in enumerate(adapters):
        if k:
            model.add_adapter(f"a{k}", lora.peft_config("llama"))
        state = {f"base_model.model.{key[:-2]}.lora_{key[-1]}.weight": v for key, v in adapter.items()}
        set_peft_model_state_dict(model, state, adapter_name=f"a{k}")
    model.base_model.add_weighted_adapter([f"a{k}" for k in range(K)], weights, "merged", combination_type=combination)
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
        merged = _peft_merged_score(backbone, lora, adapters, tokens[b], w if mode == "ND" else [x * x for x in w],
                                    "cat" if mode == "ND" else "linear")
        assert abs(batched[b] - merged) < 1e-5
    plain = predict_logits(backbone.scorer, tokens, backbone.tokenizer.pad_token_id, torch.device("cpu"))
    assert np.abs(batched - plain).max() > 1e-3  # the adapters do change the scores


@pytest.mark.parametrize("mode", ["ND", "D"])
def test_static_merge_equals_mixture_for_one_weight_vector(setup, mode):
    backbone, lora, paths, adapters, tokens, weights = setup
    w = weights[0]
    batched = _mixture_scores(backbone, lora, paths, adapters, tokens, w.expand(len(tokens), K), mode)
    merged, rank, alpha = merge_adapters(adapters, w.tolist(), mode, lora.scaling)
    scorer = fresh_scorer(backbone)
    mixture = build_mixture(scorer, paths, rank, alpha / rank, 1, mode)
    load_adapter(scorer, 0, merged)
    mixture.set(single=0)
    ids, mask = collate(tokens, backbone.tokenizer.pad_token_id, torch.device("cpu"))
    with torch.no_grad():
        assert np.abs(scorer(ids, mask).numpy() - batched).max() < 1e-5


def test_peft_format_round_trip_loads_in_peft(setup, tmp_path):
    from peft import PeftModel

    backbone, lora, paths, adapters, tokens, _ = setup
    folder = save_peft_adapter(tmp_path / "adapter", adapters[1], lora, "llama", "tiny")
    back = load_peft_adapter(folder)
    assert back.keys() == adapters[1].keys() and all(torch.equal(back[k], adapters[1][k]) for k in back)
    one_hot = torch.zeros(len(tokens), K)
    one_hot[:, 1] = 1.0
    ours = _mixture_scores(backbone, lora, paths, adapters, tokens, one_hot, "ND")
    model = PeftModel.from_pretrained(copy.deepcopy(backbone.scorer), str(folder)).eval()
    ids, mask = collate(tokens, backbone.tokenizer.pad_token_id, torch.device("cpu"))
    with torch.no_grad():
        assert np.abs(model(ids, mask).numpy() - ours).max() < 1e-5


def test_predict_logits_batches_by_length_and_keeps_order_and_weights(setup):
    """Prompts are batched shortest first; each logit lands at its prompt's position and is scored with
    that prompt's own mixture weights (``before_batch`` gets the batch's positions)."""
    backbone, lora, paths, adapters, tokens, weights = setup
    tokens = [t[: len(t) - 7 * i] for i, t in enumerate(tokens)]  # lengths differ: sorting reorders them
    assert len({len(t) for t in tokens}) == len(tokens)
    scorer = fresh_scorer(backbone)
    mixture = build_mixture(scorer, paths, lora.r, lora.scaling, K, "ND")
    for k, adapter in enumerate(adapters):
        load_adapter(scorer, k, adapter)
    seen = []

    def before(rows):
        seen.append(rows.tolist())
        mixture.set(weights=weights[rows])

    batched = predict_logits(scorer, tokens, backbone.tokenizer.pad_token_id, torch.device("cpu"), 2, before)
    assert seen[0] == [4, 3] and sorted(sum(seen, [])) == list(range(len(tokens)))
    for b in range(len(tokens)):
        alone = _mixture_scores(backbone, lora, paths, adapters, [tokens[b]], weights[b : b + 1], "ND")
        assert abs(batched[b] - alone[0]) < 1e-5
