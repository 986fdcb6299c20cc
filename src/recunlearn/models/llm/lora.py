"""LoRA adapters (trained through peft) and the mixture-of-LoRA layer that aggregates K adapters with
per-sample weights in one forward pass of the backbone.

An adapter is plain tensors: for every target linear layer ``path``, ``path.A`` (r x in) and
``path.B`` (out x r), plus ``head.weight`` / ``head.bias`` for encoder scorers with a head per adapter
(a shared head belongs to the backbone and is in no adapter). With ``s = alpha / r``
and per-sample weights w (batch x K) a :class:`MixtureLoRALinear` computes, for each sample b:

- APA(D):  W0 x + s (sum_k w_bk B_k)(sum_k w_bk A_k) x      (the adapters' parameters averaged)
- APA(ND): W0 x + s sum_k w_bk B_k A_k x                     (the adapters' updates averaged)

:func:`merge_adapters` gives the same as one static adapter for a single weight vector (what peft's
``add_weighted_adapter`` computes with ``combination_type='cat'`` for ND, or 'linear' with squared
weights for D), and :func:`save_peft_adapter` writes an adapter in peft's own format for the Hugging
Face model inside the scorer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from safetensors.torch import load_file, save_file
from torch import nn

from recunlearn.errors import ConfigError, RecUnlearnError

PEFT_PREFIX = "base_model.model."
HEAD_FILE = "recunlearn_head.safetensors"
"""An encoder scorer's binary head (``weight``, ``bias``) in a saved adapter's folder: it is not a
module of the Hugging Face model, so it stays out of the LoRA file that peft loads onto that model."""
Aggregation = Literal["D", "ND"]


class LoRAConfig(BaseModel):
    """Low-rank adapters on the backbone's attention projections (TALLRec's defaults)."""

    model_config = ConfigDict(extra="forbid")
    r: int = Field(8, ge=1)
    """Rank of each adapter."""
    alpha: float = Field(16.0, gt=0)
    """LoRA alpha; the update is scaled by alpha / r."""
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    """Dropout on the adapter's input while training."""
    target_modules: list[str] | None = None
    """Names of the linear layers that get adapters; None = peft's default for the architecture
    (q_proj / v_proj for Llama-like models, query / value for BERT)."""

    @property
    def scaling(self) -> float:
        return self.alpha / self.r

    def resolved_targets(self, model_type: str) -> list[str]:
        if self.target_modules:
            return list(self.target_modules)
        from peft.utils.constants import (
            TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as defaults,
        )

        if model_type not in defaults:
            raise ConfigError(
                f"no default LoRA target modules for model type {model_type!r}; set lora.target_modules"
            )
        return list(defaults[model_type])

    def peft_config(self, model_type: str):
        from peft import LoraConfig

        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=self.resolved_targets(model_type),
            bias="none",
        )


def has_own_head(scorer: nn.Module) -> bool:
    """Whether each adapter trains its own head (an encoder scorer whose head is not shared)."""
    return hasattr(scorer, "head") and not scorer.head_shared


def add_trainable_adapter(scorer: nn.Module, config: LoRAConfig) -> list[nn.Parameter]:
    """Inject one peft LoRA adapter into ``scorer`` (in place); returns the trainable parameters
    (adapter matrices and, for encoders with a head per adapter, the head). Seed the global RNG first: A is drawn from it."""
    from peft import inject_adapter_in_model

    scorer.requires_grad_(False)
    inject_adapter_in_model(config.peft_config(scorer.model_type), scorer)
    trainable = [p for n, p in scorer.named_parameters() if "lora_" in n]
    if not trainable:
        raise ConfigError(
            f"LoRA target modules {config.resolved_targets(scorer.model_type)} match no layer"
        )
    if has_own_head(scorer):
        scorer.head.requires_grad_(True)
        trainable += list(scorer.head.parameters())
    for p in trainable:
        p.data = p.data.float()  # adapters train in float32 even on a bfloat16 backbone
    return trainable


def adapter_tensors(scorer: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter of a scorer made by :func:`add_trainable_adapter`, as ``path.A`` / ``path.B`` (+ head)."""
    out: dict[str, torch.Tensor] = {}
    for name, value in scorer.state_dict().items():
        for part, suffix in (("A", ".lora_A.default.weight"), ("B", ".lora_B.default.weight")):
            if name.endswith(suffix):
                out[f"{name[: -len(suffix)]}.{part}"] = value.detach().float().cpu().clone()
    if has_own_head(scorer):
        out["head.weight"] = scorer.head.weight.detach().float().cpu().clone()
        out["head.bias"] = scorer.head.bias.detach().float().cpu().clone()
    return out


def target_paths(scorer: nn.Module, config: LoRAConfig) -> list[str]:
    """Paths of the linear layers that get adapters (peft's rule: the name is a target or ends in '.target')."""
    targets = config.resolved_targets(scorer.model_type)
    paths = [
        name
        for name, module in scorer.named_modules()
        if isinstance(module, nn.Linear)
        and any(name == t or name.endswith(f".{t}") for t in targets)
    ]
    if not paths:
        raise ConfigError(f"LoRA target modules {targets} match no linear layer of the backbone")
    return paths


def module_paths(adapter: dict[str, torch.Tensor]) -> list[str]:
    return sorted(k[:-2] for k in adapter if k.endswith(".A"))


# the mixture ----------------------------------------------------------------------------------------------
class MixtureWeights:
    """Per-sample adapter weights shared by every mixture layer of one model for the current batch."""

    def __init__(self, n_adapters: int, mode: Aggregation = "ND"):
        self.n_adapters = n_adapters
        self.mode: Aggregation = mode
        self.weights: torch.Tensor | None = None
        """batch x K weights (set before each forward)."""
        self.single: int | None = None
        """When set, only this adapter is used (one adapter's cost; for output ensembles and retraining)."""

    def set(self, weights: torch.Tensor | None = None, single: int | None = None) -> None:
        if (weights is None) == (single is None):
            raise RecUnlearnError("set either per-sample weights or a single adapter")
        self.weights, self.single = weights, single


class MixtureLoRALinear(nn.Module):
    """A frozen linear layer plus K stacked LoRA adapters mixed per sample (see the module docstring)."""

    def __init__(self, base: nn.Linear, rank: int, scaling: float, mixture: MixtureWeights):
        super().__init__()
        self.base = base
        k = mixture.n_adapters
        self.register_buffer("A", torch.zeros(k, rank, base.in_features, device=base.weight.device))
        self.register_buffer(
            "B", torch.zeros(k, base.out_features, rank, device=base.weight.device)
        )
        self.scaling = scaling
        self.mixture = mixture

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        h = x.to(self.A.dtype)
        m = self.mixture
        if m.single is not None:
            update = (h @ self.A[m.single].T) @ self.B[m.single].T
        elif m.mode == "ND":
            xa = torch.einsum("bti,kri->btkr", h, self.A) * m.weights[:, None, :, None]
            update = torch.einsum("btkr,kor->bto", xa, self.B)
        else:
            a = torch.einsum("bk,kri->bri", m.weights, self.A)
            b = torch.einsum("bk,kor->bor", m.weights, self.B)
            update = torch.einsum("btr,bor->bto", torch.einsum("bti,bri->btr", h, a), b)
        return out + (self.scaling * update).to(out.dtype)


class MixtureHead(nn.Module):
    """K linear heads mixed per sample: sum_k w_bk head_k(x) (the same for D and ND: heads are linear)."""

    def __init__(self, in_features: int, mixture: MixtureWeights, device: torch.device):
        super().__init__()
        self.register_buffer("weight", torch.zeros(mixture.n_adapters, in_features, device=device))
        self.register_buffer("bias", torch.zeros(mixture.n_adapters, device=device))
        self.mixture = mixture

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.mixture
        x = x.float()
        if m.single is not None:
            return (x @ self.weight[m.single] + self.bias[m.single]).unsqueeze(-1)
        per_adapter = x @ self.weight.T + self.bias  # batch x K
        return (per_adapter * m.weights).sum(-1, keepdim=True)


def build_mixture(
    scorer: nn.Module,
    paths: list[str],
    rank: int,
    scaling: float,
    n_adapters: int,
    mode: Aggregation = "ND",
) -> MixtureWeights:
    """Replace (in place) the layers at ``paths`` of a frozen scorer with mixture layers holding
    ``n_adapters`` empty adapters; returns the weight holder that drives them."""
    mixture = MixtureWeights(n_adapters, mode)
    for path in paths:
        parent_path, _, leaf = path.rpartition(".")
        parent = scorer.get_submodule(parent_path) if parent_path else scorer
        base = getattr(parent, leaf)
        if not isinstance(base, nn.Linear):
            raise ConfigError(
                f"LoRA target {path!r} is a {type(base).__name__}, not a linear layer"
            )
        setattr(parent, leaf, MixtureLoRALinear(base, rank, scaling, mixture))
    if has_own_head(scorer):  # a shared head stays the frozen linear layer it is
        scorer.head = MixtureHead(scorer.head.in_features, mixture, scorer.head.weight.device)
    return mixture


@torch.no_grad()
def load_adapter(scorer: nn.Module, k: int, adapter: dict[str, torch.Tensor] | None) -> None:
    """Put adapter ``k`` into a scorer built by :func:`build_mixture` (None = an empty, all-zero adapter)."""
    if adapter:
        wanted = {
            f"{name}.{part}"
            for name, module in scorer.named_modules()
            if isinstance(module, MixtureLoRALinear)
            for part in ("A", "B")
        }
        wanted |= (
            {"head.weight", "head.bias"}
            if any(isinstance(m, MixtureHead) for m in scorer.modules())
            else set()
        )
        if wanted - adapter.keys():
            missing = sorted(wanted - adapter.keys())
            raise RecUnlearnError(
                f"adapter {k} has no weights for {len(missing)} layer(s) of the backbone, e.g. "
                f"{missing[0]!r}: it was trained with other LoRA target modules"
            )
    for name, module in scorer.named_modules():
        if isinstance(module, MixtureLoRALinear):
            module.A[k] = adapter[f"{name}.A"].to(module.A) if adapter else 0.0
            module.B[k] = adapter[f"{name}.B"].to(module.B) if adapter else 0.0
        elif isinstance(module, MixtureHead):
            module.weight[k] = (
                adapter["head.weight"].reshape(-1).to(module.weight) if adapter else 0.0
            )
            module.bias[k] = adapter["head.bias"].reshape(-1).to(module.bias) if adapter else 0.0


# static merges and peft's format ------------------------------------------------------------------------
def merge_adapters(
    adapters: list[dict[str, torch.Tensor]], weights: list[float], mode: Aggregation, scaling: float
) -> tuple[dict[str, torch.Tensor], int, float]:
    """One adapter equal to the mixture for a single weight vector; returns (tensors, rank, alpha).

    D keeps rank r (A = sum w A_k, B = sum w B_k); ND concatenates ranks (A = [A_1; ...; A_K],
    B = [w_1 B_1, ..., w_K B_K]), so its rank is K r and alpha is set to keep the scaling.
    """
    merged: dict[str, torch.Tensor] = {}
    rank = adapters[0][f"{module_paths(adapters[0])[0]}.A"].shape[0]
    for path in module_paths(adapters[0]):
        if mode == "D":
            merged[f"{path}.A"] = sum(w * a[f"{path}.A"] for w, a in zip(weights, adapters))
            merged[f"{path}.B"] = sum(w * a[f"{path}.B"] for w, a in zip(weights, adapters))
        else:
            merged[f"{path}.A"] = torch.cat([a[f"{path}.A"] for a in adapters], dim=0)
            merged[f"{path}.B"] = torch.cat(
                [w * a[f"{path}.B"] for w, a in zip(weights, adapters)], dim=1
            )
    if "head.weight" in adapters[0]:
        merged["head.weight"] = sum(w * a["head.weight"] for w, a in zip(weights, adapters))
        merged["head.bias"] = sum(w * a["head.bias"] for w, a in zip(weights, adapters))
    new_rank = rank if mode == "D" else rank * len(adapters)
    return merged, new_rank, scaling * new_rank


def save_peft_adapter(
    folder: str | Path,
    adapter: dict[str, torch.Tensor],
    config: LoRAConfig,
    scorer: nn.Module,
    base_model: str,
) -> Path:
    """Write ``adapter_model.safetensors`` + ``adapter_config.json`` as peft's ``save_pretrained`` does for
    the Hugging Face model at ``base_model`` (a local folder or hub name), so that plain
    ``PeftModel.from_pretrained(AutoModel...from_pretrained(base_model), folder)`` applies the adapter.

    Keys are ``base_model.model.<path>.lora_A.weight`` with ``path`` relative to that model (the
    scorer's ``model_prefix`` dropped). The rank is read from the tensors (a merged ND adapter has rank
    K r) and alpha keeps ``config``'s scaling alpha / r. An encoder's head is not part of the Hugging
    Face model, so it goes to :data:`HEAD_FILE`, which only :func:`load_peft_adapter` reads; a shared
    head (the backbone's, in no adapter) is written there too, so every folder scores on its own.
    """
    folder = Path(folder)
    prefix = scorer.model_prefix
    ranks = {value.shape[0] for key, value in adapter.items() if key.endswith(".A")}
    if len(ranks) != 1:
        raise RecUnlearnError(
            f"an adapter saved in peft's format needs one rank for every layer, got {sorted(ranks)}"
        )
    tensors, head = {}, {}
    for key, value in adapter.items():
        if key.startswith("head."):
            head[key.removeprefix("head.")] = value.contiguous()
            continue
        if not key.startswith(prefix):
            raise RecUnlearnError(
                f"adapter layer {key!r} is outside the scorer's model ({prefix!r})"
            )
        path, part = key.removeprefix(prefix).rsplit(".", 1)
        tensors[f"{PEFT_PREFIX}{path}.lora_{part}.weight"] = value.contiguous()
    if not head and getattr(
        scorer, "head_shared", False
    ):  # the backbone's shared head, beside every adapter
        head = {
            "weight": scorer.head.weight.detach().float().cpu().contiguous(),
            "bias": scorer.head.bias.detach().float().cpu().contiguous(),
        }
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    (folder / HEAD_FILE).unlink(missing_ok=True)
    if head:
        save_file(head, str(folder / HEAD_FILE))
    (rank,) = ranks
    peft_config = config.model_copy(update={"r": rank, "alpha": config.scaling * rank}).peft_config(
        scorer.model_type
    )
    document = peft_config.to_dict()
    document.update(
        {
            "base_model_name_or_path": base_model,
            "target_modules": sorted(document["target_modules"]),
        }
    )
    (folder / "adapter_config.json").write_text(json.dumps(document, indent=1, default=str))
    return folder


def load_peft_adapter(folder: str | Path, scorer: nn.Module) -> dict[str, torch.Tensor]:
    """Read an adapter written by :func:`save_peft_adapter` or by peft for the scorer's Hugging Face
    model, keyed by the scorer's paths (+ the head from :data:`HEAD_FILE`). With a shared head the file's head must be the scorer's own, and it is not returned (no adapter holds it)."""
    folder = Path(folder)
    path = folder / "adapter_model.safetensors"
    if not path.is_file():
        raise RecUnlearnError(f"{folder} holds no adapter_model.safetensors")
    modules = {name for name, _ in scorer.named_modules()}
    adapter = {}
    for key, value in load_file(str(path)).items():
        module, part = key.removeprefix(PEFT_PREFIX).rsplit(".lora_", 1)
        layer = scorer.model_prefix + module
        if layer not in modules:
            raise RecUnlearnError(
                f"{folder}: adapter layer {module!r} is not in the {scorer.model_type} backbone"
            )
        adapter[f"{layer}.{part.split('.')[0]}"] = value
    if (folder / HEAD_FILE).is_file():
        head = load_file(str(folder / HEAD_FILE))
        if not getattr(scorer, "head_shared", False):
            adapter.update({f"head.{k}": v for k, v in head.items()})
        elif not all(
            torch.equal(head[k], getattr(scorer.head, k).detach().float().cpu())
            for k in ("weight", "bias")
        ):
            raise RecUnlearnError(
                f"{folder}: its shared head is not this backbone's (another backbone seed or head_norm)"
            )
    return adapter
