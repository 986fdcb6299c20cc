"""Training one LoRA adapter: a pure function of an :class:`AdapterJob` (plain data in, tensors out), so
the same job gives the same adapter bitwise on CPU, in this process, a process pool or on Ray.

The objective is TALLRec's restricted to what is scored: binary cross-entropy of P(Yes) (the
two-way softmax of the answer token; for encoders the head's sigmoid) against the label. AdamW,
gradient accumulation up to ``batch_size``, early stopping on validation AUC; the adapter of the
best epoch is returned with its validation predictions (APA's attention caches them).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from recunlearn.data.samples import SampleTable
from recunlearn.models.llm.backbones import BackboneConfig, fresh_scorer, load_backbone
from recunlearn.models.llm.lora import LoRAConfig, adapter_tensors, add_trainable_adapter
from recunlearn.models.llm.scoring import batches, collate, predict_logits, tokenize
from recunlearn.seeds import Seed
from recunlearn.train.auc import roc_auc
from recunlearn.train.stopping import early_stopping


class AdapterTrainConfig(BaseModel):
    """How each adapter is trained (defaults: TALLRec's)."""

    model_config = ConfigDict(extra="forbid")
    lr: float = Field(1e-4, gt=0)
    """AdamW learning rate (TALLRec: 1e-4; small encoders learn faster with 1e-3)."""
    weight_decay: float = Field(0.0, ge=0)
    """AdamW weight decay on the adapter."""
    batch_size: int = Field(128, ge=1)
    """Samples per optimiser step (TALLRec: 128)."""
    micro_batch_size: int = Field(16, ge=1)
    """Samples per forward pass; gradients accumulate up to ``batch_size`` (memory, not maths)."""
    max_epochs: int = Field(200, ge=1)
    """Upper bound on epochs (TALLRec: 200)."""
    patience: int = Field(10, ge=1)
    """Stop after this many validations without a better validation AUC (TALLRec: 10)."""
    eval_every: int = Field(1, ge=1)
    """Validate every this many epochs, and after the last one. TALLRec validates every 5 epochs
    (``eval_steps`` = samples / 128 x 5 steps of 128 samples), so a small shard's validation passes
    stay a small share of its training, as they do for retraining: validating a small shard every
    epoch costs about as much as training it (docs/apa.md has the measurements)."""
    seed: Seed = 0
    """Adapter k's shuffling and dropout are seeded with ``seed + k``; its initialisation too, unless
    the method shares one initialisation across its adapters (APA's ``shared_init``: then ``seed``)."""
    eval_batch_size: int = Field(64, ge=1)
    """Samples per forward pass when scoring."""


@dataclass(frozen=True)
class AdapterJob:
    """Train one adapter from scratch on ``train``; early-stop on ``valid``."""

    shard: int
    backbone: BackboneConfig
    lora: LoRAConfig
    train_config: AdapterTrainConfig
    seed: int
    train: SampleTable
    valid: SampleTable | None
    device: str = "cpu"
    init_seed: int | None = None
    """Seed of the adapter's initialisation (LoRA A); None = ``seed``. Methods that aggregate adapters
    at the parameter level give every shard the same ``init_seed`` (a shared starting point), while
    ``seed`` (data order, dropout) stays per shard."""


@dataclass
class AdapterResult:
    shard: int
    adapter: dict[str, torch.Tensor]
    valid_logits: np.ndarray | None
    """The returned adapter's logits on the validation samples (None without validation data)."""
    info: dict[str, Any]


def init_adapter(job: AdapterJob) -> tuple[torch.nn.Module, list[torch.nn.Parameter]]:
    """A private scorer with the job's freshly initialised adapter (before any training step), and its
    trainable parameters. The global RNG is left seeded with ``job.seed`` for dropout."""
    backbone = load_backbone(job.backbone, job.device)
    scorer = fresh_scorer(backbone)
    torch.manual_seed(job.seed if job.init_seed is None else job.init_seed)
    params = add_trainable_adapter(scorer, job.lora)
    if job.init_seed is not None:
        torch.manual_seed(job.seed)  # shared start, per-shard dropout
    return scorer, params


def train_adapter(job: AdapterJob) -> AdapterResult:
    """Pure function of the job (see the module docstring)."""
    start = time.perf_counter()
    backbone = load_backbone(job.backbone, job.device)
    scorer, params = init_adapter(job)
    optimizer = torch.optim.AdamW(
        params, lr=job.train_config.lr, weight_decay=job.train_config.weight_decay
    )
    tok, pad = backbone.tokenizer, backbone.tokenizer.pad_token_id
    cfg, device = job.train_config, backbone.device
    train_ids = tokenize(tok, job.train.prompts(backbone.template), job.backbone.max_length)
    valid_ids = (
        tokenize(tok, job.valid.prompts(backbone.template), job.backbone.max_length)
        if job.valid
        else None
    )
    labels = torch.tensor(job.train.label, dtype=torch.float32)
    generator = torch.Generator().manual_seed(job.seed)
    valid_logits: np.ndarray | None = None

    def train_epoch(_: int) -> None:
        scorer.train()
        order = torch.randperm(len(train_ids), generator=generator).numpy()
        for step in batches(len(order), cfg.batch_size):
            optimizer.zero_grad(set_to_none=True)
            for micro in batches(len(step), cfg.micro_batch_size):
                rows = order[step[micro]]
                ids, mask = collate([train_ids[r] for r in rows], pad, device)
                logits = scorer(ids, mask)
                loss = torch.nn.functional.binary_cross_entropy_with_logits(
                    logits, labels[rows].to(device), reduction="sum"
                ) / len(step)
                loss.backward()
            optimizer.step()

    def measure() -> float:
        """Validation AUC; where it is undefined (one class), minus the log-loss."""
        nonlocal valid_logits
        valid_logits = predict_logits(scorer, valid_ids, pad, device, cfg.eval_batch_size)
        auc = roc_auc(job.valid.label, valid_logits)
        if np.isfinite(auc):
            return auc
        signed = np.where(job.valid.label > 0, valid_logits, -valid_logits)
        return -float(np.mean(np.logaddexp(0, -signed)))

    run = early_stopping(
        train_epoch,
        None if valid_ids is None else measure,
        lambda: (adapter_tensors(scorer), valid_logits),
        cfg.max_epochs,
        cfg.patience,
        cfg.eval_every,
    )
    adapter, best_logits = (
        (adapter_tensors(scorer), None) if valid_ids is None else run.best_state or (None, None)
    )
    info = {
        "epochs": run.epochs,
        "best_epoch": run.best_epoch if valid_ids is not None else run.epochs,
        "best_valid_auc": round(run.best_score, 6) if np.isfinite(run.best_score) else None,
        "valid_history": [round(score, 6) for score in run.history],
        "samples": len(job.train),
        "data_hash": job.train.content_hash(),
        "seconds": round(time.perf_counter() - start, 4),
    }
    return AdapterResult(job.shard, adapter, best_logits, info)
