"""The one training loop: Adam, mini-batches, early stopping on a validation measure (AUC of labels,
or Recall / NDCG@K of a ranking), seeded and deterministic.

Every method that trains a model (retraining, each shard of SISA/RecEraser, fine-tuning) goes
through :func:`fit_model`, so 'trained from scratch with the same seed' means the same thing
everywhere and exactness tests can compare bitwise.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from tqdm.auto import tqdm

from recunlearn.data.interactions import Interactions
from recunlearn.errors import DataError
from recunlearn.models.base import CFModel
from recunlearn.models.config import LightGCNConfig, MFConfig, build_model
from recunlearn.seeds import Seed
from recunlearn.train.auc import roc_auc
from recunlearn.train.losses import bpr, l2_penalty, pointwise_bce
from recunlearn.train.ranking import RankingTask
from recunlearn.train.runtime import configure_threads, resolve_device, show_progress
from recunlearn.train.stopping import early_stopping


class TrainConfig(BaseModel):
    """How a collaborative-filtering model is trained."""

    model_config = ConfigDict(extra="forbid")
    loss: Literal["bce", "bpr"] = "bce"
    """'bce': pointwise cross-entropy on labels (IFRU protocol); 'bpr': pairwise on positives with
    one negative item per positive, uniform over the items the user has no training positive with."""
    lr: float = Field(1e-3, gt=0)
    """Adam learning rate; left unset with ``loss = "bpr"`` it is :data:`BPR_LR`."""
    l2: float = Field(1e-2, ge=0)
    """L2 penalty on the embedding rows of each batch; also keeps the Hessian of the objective
    positive definite for influence methods."""
    batch_size: int = Field(2048, gt=0)
    """Rows per Adam step (IFRU: 2048)."""
    max_epochs: int = Field(200, gt=0)
    """Upper bound on epochs."""
    patience: int | None = Field(None, ge=1)
    """Stop after this many epochs without a gain of the validation measure; None = the model's
    default (MF 10 as IFRU; LightGCN 20, whose validation AUC can plateau before rising again)."""
    valid_metric: Literal["auc", "recall", "ndcg"] | None = None
    """What early stopping watches: 'auc' of the validation labels, or 'recall' / 'ndcg' at
    ``valid_k`` of a ranking of all items with the training items masked. None: AUC for 'bce'
    (IFRU's protocol) and Recall@K for 'bpr', whose models are judged by the ranking they give."""
    valid_k: int = Field(20, ge=1)
    """Cut-off of the ranking measures early stopping watches."""
    seed: Seed = 0
    """Seeds initialisation and batch order; same seed and data give the same model bitwise on CPU."""
    device: str | None = None
    """'cpu', 'cuda', ...; default: $RECUNLEARN_DEVICE, else CUDA when present, else CPU."""

    @model_validator(mode="before")
    @classmethod
    def _ranking_defaults(cls, values):
        if isinstance(values, dict) and values.get("loss") == "bpr" and "lr" not in values:
            values = {**values, "lr": BPR_LR}
        return values

    @property
    def stopping_metric(self) -> str:
        """The validation measure early stopping watches (see ``valid_metric``)."""
        return self.valid_metric or ("auc" if self.loss == "bce" else "recall")


BPR_LR = 1e-2
"""Adam's learning rate for BPR when none is given: ranking models on implicit feedback reach their
best validation ranking in a few dozen epochs at this rate, where 1e-3 needs hundreds."""


@dataclass
class FitResult:
    """A trained model and how training went."""

    model: CFModel
    epochs: int = 0
    best_epoch: int = 0
    valid_metric: str = "auc"
    best_valid: float = float("nan")
    seconds: float = 0.0
    history: list[float] = field(default_factory=list)


def _tensor(array: np.ndarray, device: torch.device, dtype=torch.long) -> torch.Tensor:
    return torch.tensor(np.asarray(array), dtype=dtype, device=device)


NEGATIVE_REDRAWS = 100
"""BPR: how many times a sampled negative that is one of the user's positives is drawn again (a user
who liked almost every item keeps a positive 'negative' only if every draw hits one)."""


def sample_negatives(
    n_items: int,
    users: torch.Tensor,
    generator: torch.Generator | None,
    positives: torch.Tensor | None = None,
) -> torch.Tensor:
    """One item per row, uniform; with ``positives`` (sorted user x n_items + item keys of the training
    positives), one the user liked is drawn again, up to :data:`NEGATIVE_REDRAWS` times, as LightGCN's
    code samples negatives. Drawn on the CPU, where the generator lives (a CUDA draw refuses a CPU
    generator), then moved."""
    negatives = torch.randint(0, n_items, users.shape, generator=generator)
    if positives is not None and len(positives):
        owners = users.cpu()
        for _ in range(NEGATIVE_REDRAWS):
            keys = owners * n_items + negatives
            found = (
                positives[torch.searchsorted(positives, keys).clamp_(max=len(positives) - 1)]
                == keys
            )
            if not found.any():
                break
            negatives[found] = torch.randint(0, n_items, (int(found.sum()),), generator=generator)
    return negatives.to(users.device)


def batch_loss(
    model: CFModel,
    users: torch.Tensor,
    items: torch.Tensor,
    labels: torch.Tensor,
    config: TrainConfig,
    generator: torch.Generator | None = None,
    positives: torch.Tensor | None = None,
) -> torch.Tensor:
    """The training objective on one batch (mean loss plus L2 on the rows it touches: for BPR the
    sampled negatives' too, as LightGCN's code; ``positives``: see :func:`sample_negatives`).

    Rows are gathered with ``index_select``: its backward adds a repeated row's gradients in a
    fixed order, where advanced indexing's does not on several CPU threads (same seed, other model)."""
    u_rep, i_rep = model.representations()
    u = u_rep.index_select(0, users)
    if config.loss == "bce":
        loss = pointwise_bce((u * i_rep.index_select(0, items)).sum(-1), labels)
        touched = (items,)
    else:
        neg = sample_negatives(model.n_items, users, generator, positives)
        loss = bpr(
            (u * i_rep.index_select(0, items)).sum(-1), (u * i_rep.index_select(0, neg)).sum(-1)
        )
        touched = (items, neg)
    if config.l2:
        loss = loss + config.l2 * l2_penalty(
            model.user_emb.weight.index_select(0, users),
            *(model.item_emb.weight.index_select(0, i) for i in touched),
        )
    return loss


@torch.no_grad()
def predict(model: CFModel, users: np.ndarray, items: np.ndarray, batch: int = 65536) -> np.ndarray:
    """Probabilities (sigmoid of logits) of the given index pairs."""
    model.eval()
    device = model.user_emb.weight.device
    u_rep, i_rep = model.representations()
    out = []
    for start in range(0, len(users), batch):
        u = _tensor(users[start : start + batch], device)
        i = _tensor(items[start : start + batch], device)
        out.append(
            torch.sigmoid((u_rep.index_select(0, u) * i_rep.index_select(0, i)).sum(-1)).cpu()
        )
    return torch.cat(out).numpy() if out else np.zeros(0, np.float32)


def valid_auc(model: CFModel, valid: Interactions) -> float:
    if len(valid) == 0:
        return float("nan")
    return roc_auc(valid.label, predict(model, valid.user, valid.item))


def validation_measure(
    model: CFModel, train: Interactions, valid: Interactions, config: TrainConfig
) -> Callable[[], float]:
    """What early stopping calls after each epoch: the model's current validation measure (see
    :attr:`TrainConfig.stopping_metric`); refuses validation data on which it is undefined."""
    metric = config.stopping_metric
    if metric == "auc":
        if len(np.unique(valid.label)) < 2:  # its AUC is undefined: no epoch would ever be best
            raise DataError(
                f"validation data with {'no rows' if not len(valid) else 'one label class only'} cannot "
                "early-stop on AUC, which needs liked and disliked rows; pass no validation data to "
                "train max_epochs epochs, or set train.valid_metric = 'recall' to early-stop on a ranking"
            )
        return lambda: valid_auc(model, valid)
    if not (valid.label > 0).any():
        raise DataError(
            f"validation data without a positive row cannot early-stop on {metric}@{config.valid_k}: "
            "nothing is there to find"
        )
    task, key = RankingTask(train, valid, config.valid_k), f"{metric}@{config.valid_k}"
    device = model.user_emb.weight.device
    return lambda: task.evaluate(
        lambda users: model.score_all(torch.as_tensor(users, device=device))
    )[key]


def fit_model(
    model_config: MFConfig | LightGCNConfig,
    train: Interactions,
    valid: Interactions | None,
    config: TrainConfig,
    *,
    desc: str = "train",
) -> FitResult:
    """Train a fresh model on ``train``; early-stop on ``valid`` AUC (or run ``max_epochs`` without it)."""
    configure_threads()
    device = resolve_device(config.device)
    model = build_model(model_config, train, config.seed).to(device)
    return continue_training(model, train, valid, config, desc=desc)


def continue_training(
    model: CFModel,
    train: Interactions,
    valid: Interactions | None,
    config: TrainConfig,
    *,
    desc: str = "train",
) -> FitResult:
    """Train ``model`` further (fine-tuning uses this with a few epochs)."""
    measure = validation_measure(model, train, valid, config) if valid is not None else None
    start = time.perf_counter()
    device = model.user_emb.weight.device
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    users, items = _tensor(train.user, device), _tensor(train.item, device)
    labels = _tensor(train.label, device, torch.float32)
    positives = None
    if config.loss == "bpr":
        keep = labels > 0
        users, items, labels = users[keep], items[keep], labels[keep]
        positives = torch.unique(
            users.cpu() * model.n_items + items.cpu()
        )  # sorted: what negatives avoid
    patience = config.patience if config.patience is not None else model.default_patience
    result = FitResult(model=model, valid_metric=config.stopping_metric)
    bar = tqdm(total=config.max_epochs, desc=desc, disable=not show_progress(), leave=False)

    def train_epoch(_: int) -> None:
        model.train()
        order = torch.randperm(len(users), generator=generator).to(device)
        for start_row in range(0, len(order), config.batch_size):
            idx = order[start_row : start_row + config.batch_size]
            loss = batch_loss(
                model, users[idx], items[idx], labels[idx], config, generator, positives
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        bar.update()

    def shown_measure() -> float:
        score = measure()
        bar.set_postfix({f"valid_{result.valid_metric}": f"{score:.4f}"})
        return score

    run = early_stopping(
        train_epoch,
        None if measure is None else shown_measure,
        lambda: copy.deepcopy(model.state_dict()),
        config.max_epochs,
        patience,
    )
    bar.close()
    result.epochs, result.history = run.epochs, run.history
    if run.best_state is not None:
        model.load_state_dict(run.best_state)
        result.best_epoch, result.best_valid = run.best_epoch, float(run.best_score)
    else:
        result.best_epoch = result.epochs
    model.eval()
    result.seconds = time.perf_counter() - start
    return result
