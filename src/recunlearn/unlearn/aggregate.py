"""How shard models are combined into one recommender.

The aggregators, chosen by a typed config (``kind``):

- ``average``: the mean of the shard models' probabilities (SISA, GraphEraser).
- ``attention``: RecEraser's learned attention over the shard models' embeddings. Each shard's user
  (item) representation is mapped by its own linear transform into a common space; an attention
  network weighs the K transformed representations per user (item); the score is the dot product of
  the aggregated user and item representations. Trained after the shards, with the shards frozen, on
  the current training rows; a deletion changes a shard and the rows, so it is retrained from its seed
  (seconds: it has K d^2 parameters per side and trains on frozen inputs).
- ``owner``: each user is scored by the shards that hold the user's training rows (the mean of their
  logits, weighted by how many of the user's rows each holds; with a user partition, the one shard
  that holds the user). Nothing is trained: after a deletion only the weights are recounted.
- ``foldin``: ``owner`` beside every other shard: each user is folded into the shards that hold none
  of the user's rows (an implicit least-squares solve against the shard's item vectors on the user's
  own rows), each shard's logits are standardised per user, and the owner-weighted mean is mixed
  with the mean over all shards. Nothing is trained: after a deletion the fold-ins are solved again
  (only in the retrained shards when the deleted rows were whole users').
- ``weighted``: a sample-dependent weighted mean: shard k's weight for user u is
  softmax_k(-tau * error of shard k on u's validation rows), APA's sample-adaptive weighting with the
  user's validation rows as the neighbours. After a deletion only the changed shards' errors are
  recomputed, unless the deletion also removed validation rows (then every shard's are).

Every aggregator is a pure function of the shard models, the data and its seed, so refitting it after a
deletion gives what fitting it from scratch on the remaining data gives.

While shards are quarantined (:mod:`recunlearn.unlearn.quarantine`) the average runs over the remaining
shards (empty ones are skipped the same way); every other aggregator was fitted on the shards it
combines, so it falls back to that plain average until the repair refits it.

One module: the aggregators share the config union, the shard-logit helpers and the quarantine
fallback, and each is a few dozen lines.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from recunlearn.data.interactions import Interactions
from recunlearn.models.base import CFModel
from recunlearn.seeds import Seed
from recunlearn.train.auc import roc_auc
from recunlearn.train.loop import predict, sample_negatives
from recunlearn.train.losses import bpr
from recunlearn.train.ranking import RankingTask
from recunlearn.train.stopping import early_stopping


class AverageConfig(BaseModel):
    """The mean of the shard models' probabilities, or of their logits."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["average"] = "average"
    over: Literal["probabilities", "logits"] | None = None
    """'probabilities' (SISA's mean of predictions), or 'logits' (the sigmoid of the mean logit:
    a BPR model's logits only rank, and their probabilities saturate near 1, where a mean ties
    items that the shards told apart); None: 'logits' for shards trained with BPR, else
    'probabilities' (a sharded method's config fills it in)."""


class AttentionConfig(BaseModel):
    """RecEraser's attention aggregator over the shard models' embeddings."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["attention"] = "attention"
    attention_dim: int = Field(16, gt=0)
    """Hidden size of the attention network (RecEraser uses half the embedding size)."""
    epochs: int | None = Field(None, gt=0)
    """Passes over the training rows; the epoch with the best validation measure is kept. None: 2 for
    'bce' (on ML-100K with K=10 validation AUC peaks at the second epoch, so more only costs
    unlearning time), 10 for 'bpr' (its validation Recall@20 still climbs past epoch 2)."""
    lr: float = Field(0.01, gt=0)
    """Adam learning rate."""
    l2: float = Field(1e-4, ge=0)
    """L2 penalty on the transforms and attention weights."""
    batch_size: int = Field(8192, gt=0)
    """Rows per Adam step (large: a step's cost is set by the distinct users and items it touches)."""
    seed: Seed = 0
    """Seeds initialisation and batch order, so a refit after a deletion is reproducible bitwise."""
    loss: Literal["bce", "bpr"] | None = None
    """'bce' on the training labels, or 'bpr' on the positives with sampled negatives (RecEraser's
    own, for implicit feedback), the epoch kept by validation Recall@20; None: the shards' training
    loss (a sharded method's config fills it in)."""


class WeightedConfig(BaseModel):
    """A weighted mean of shard probabilities whose weights depend on the user."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["weighted"] = "weighted"
    tau: float = Field(10.0, ge=0)
    """Temperature: weight_k = softmax(-tau * error_k); 0 gives the plain average."""
    error: Literal["bce", "abs"] = "bce"
    """Error of a shard on a validation row: cross-entropy, or |probability - label|."""


class OwnerConfig(BaseModel):
    """Each user scored by the shard models that hold the user's training rows."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["owner"] = "owner"


class FoldInConfig(BaseModel):
    """Each user scored by the shards that hold the user's rows and, beside them, by every other shard
    with the user folded in."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["foldin"] = "foldin"
    own_weight: float = Field(0.5, ge=0.0, le=1.0)
    """Share of the score from the shards that hold the user's rows (weighted as 'owner'); the rest
    is the mean over every non-empty shard. 1 ranks as 'owner'."""
    confidence: float = Field(5.0, gt=0)
    """alpha of the implicit least-squares fold-in: a positive counts 1 + alpha, every other item 1."""
    l2: float = Field(1.0, gt=0)
    """Ridge penalty of the fold-in."""
    cg_steps: int = Field(10, ge=1)
    """Conjugate-gradient steps of the fold-in (one solve for all users at once)."""


AggregatorConfig = Annotated[
    AverageConfig | AttentionConfig | WeightedConfig | OwnerConfig | FoldInConfig,
    Field(discriminator="kind"),
]


def shard_probabilities(
    models: Sequence[CFModel | None], users: np.ndarray, items: np.ndarray
) -> np.ndarray:
    """K x n probabilities of the pairs under each shard model; NaN rows for empty shards."""
    out = np.full((len(models), len(users)), np.nan, np.float32)
    for k, model in enumerate(models):
        if model is not None:
            out[k] = predict(model, users, items)
    return out


@torch.no_grad()
def shard_probabilities_all(
    models: Sequence[CFModel | None], users: np.ndarray, n_items: int
) -> np.ndarray:
    """K x n_users x n_items probabilities of the users against every item; NaN for empty shards."""
    out = np.full((len(models), len(users), n_items), np.nan, np.float32)
    for k, model in enumerate(models):
        if model is not None:
            device = model.user_emb.weight.device
            out[k] = (
                torch.sigmoid(model.score_all(torch.as_tensor(users, device=device))).cpu().numpy()
            )
    return out


@torch.no_grad()
def _shard_logits(
    models: Sequence[CFModel | None], users: np.ndarray, items: np.ndarray | None, n_items: int = 0
) -> np.ndarray:
    """K x n logits of the pairs (``items`` None: K x users x n_items, against every item), in float64;
    NaN for empty shards."""
    shape = (len(models), len(users)) if items is not None else (len(models), len(users), n_items)
    out = np.full(shape, np.nan)
    for k, model in enumerate(models):
        if model is not None:
            device = model.user_emb.weight.device
            # copies: the index arrays may be read-only views (torch warns on those)
            u = torch.tensor(users, dtype=torch.int64, device=device)
            logits = (
                model.score_all(u)
                if items is None
                else model(u, torch.tensor(items, dtype=torch.int64, device=device))
            )
            out[k] = logits.double().cpu().numpy()
    return out


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


class Aggregator(ABC):
    """Combines the K shard models' predictions; refitted after shards change when it depends on them."""

    depends_on_shards: bool = True
    """Whether :meth:`fit` must run again after a shard is retrained."""
    uses_validation: bool = True
    """Whether :meth:`fit` reads the validation data (it must run again, for every shard, when
    validation rows are deleted)."""

    @abstractmethod
    def fit(
        self,
        models: Sequence[CFModel | None],
        train: Interactions,
        valid: Interactions | None,
        changed: Sequence[int],
        assignment: np.ndarray | None = None,
    ) -> dict[str, Any] | None:
        """(Re)fit after the ``changed`` shards were (re)trained; ``assignment`` is the shard of each
        ``train`` row. Returns JSON-able info, None if nothing fitted."""

    @abstractmethod
    def score(
        self, models: Sequence[CFModel | None], users: np.ndarray, items: np.ndarray
    ) -> np.ndarray:
        """Probabilities of (user, item) index pairs."""

    def score_all(
        self, models: Sequence[CFModel | None], users: np.ndarray, n_items: int
    ) -> np.ndarray:
        """Probabilities of the users against every item (rows: users)."""
        grid_u = np.repeat(users, n_items)
        grid_i = np.tile(np.arange(n_items), len(users))
        return self.score(models, grid_u, grid_i).reshape(len(users), n_items)

    def tensors(self) -> dict[str, torch.Tensor]:
        """Fitted state to save (safetensors)."""
        return {}

    def restore(self, tensors: dict[str, torch.Tensor], models: Sequence[CFModel | None]) -> None:
        """Rebuild the fitted state from :meth:`tensors`' output (stateless aggregators: nothing)."""
        return None


class AverageAggregator(Aggregator):
    depends_on_shards = False
    uses_validation = False

    def __init__(self, config: AverageConfig):
        self.config = config

    def fit(self, models, train, valid, changed, assignment=None):
        return None

    def score(self, models, users, items):
        if self.config.over == "logits":
            return _sigmoid(np.nanmean(_shard_logits(models, users, items), axis=0))
        return np.nanmean(shard_probabilities(models, users, items), axis=0)

    def score_all(self, models, users, n_items):
        if self.config.over == "logits":
            return _sigmoid(np.nanmean(_shard_logits(models, users, None, n_items), axis=0))
        return np.nanmean(shard_probabilities_all(models, users, n_items), axis=0)


class WeightedAggregator(Aggregator):
    """Per-user weights from each shard's error on that user's validation rows (uniform without any)."""

    def __init__(self, config: WeightedConfig):
        self.config = config
        self.errors: np.ndarray | None = (
            None  # n_users x K mean validation error; NaN = no rows / empty shard
        )

    def fit(self, models, train, valid, changed, assignment=None):
        n_shards = len(models)
        if self.errors is None or self.errors.shape != (train.n_users, n_shards):
            self.errors = np.full((train.n_users, n_shards), np.nan)
            changed = range(n_shards)
        if valid is None or len(valid) == 0:
            return {"changed": sorted(changed), "users_with_weights": 0}
        counts = np.bincount(valid.user, minlength=train.n_users).astype(np.float64)
        for k in changed:
            if models[k] is None:
                self.errors[:, k] = np.nan
                continue
            p = predict(models[k], valid.user, valid.item).astype(np.float64)
            if self.config.error == "bce":
                p = np.clip(p, 1e-7, 1 - 1e-7)
                row_error = -(valid.label * np.log(p) + (1 - valid.label) * np.log(1 - p))
            else:
                row_error = np.abs(p - valid.label)
            with np.errstate(invalid="ignore", divide="ignore"):
                self.errors[:, k] = (
                    np.bincount(valid.user, weights=row_error, minlength=train.n_users) / counts
                )
        return {
            "changed": sorted(int(k) for k in changed),
            "users_with_weights": int((counts > 0).sum()),
        }

    def weights(self, users: np.ndarray, models: Sequence[CFModel | None]) -> np.ndarray:
        """len(users) x K weights summing to 1 over the non-empty shards."""
        present = np.array([m is not None for m in models])
        errors = self.errors[users]
        logits = np.where(np.isnan(errors), 0.0, -self.config.tau * errors)
        known = ~np.isnan(errors).all(axis=1)  # users with validation rows in some non-empty shard
        logits[~known] = 0.0
        logits[:, ~present] = -np.inf
        logits -= logits.max(axis=1, keepdims=True)
        w = np.exp(logits)
        return w / w.sum(axis=1, keepdims=True)

    def score(self, models, users, items):
        per_shard = np.nan_to_num(shard_probabilities(models, users, items))
        return (self.weights(users, models).T * per_shard).sum(0)

    def score_all(self, models, users, n_items):
        per_shard = np.nan_to_num(shard_probabilities_all(models, users, n_items))
        return np.einsum("uk,kui->ui", self.weights(users, models), per_shard)

    def tensors(self):
        return {"errors": torch.from_numpy(self.errors.copy())}

    def restore(self, tensors, models):
        self.errors = tensors["errors"].numpy().copy()


class _AttentionSide(torch.nn.Module):
    """Transforms and attention for one side (users or items) over K shard representations."""

    def __init__(self, n_shards: int, dim: int, attention_dim: int, generator: torch.Generator):
        super().__init__()
        # identity transforms: training starts from the plain mean of the shard representations
        self.transform = torch.nn.Parameter(torch.eye(dim).repeat(n_shards, 1, 1))
        self.shift = torch.nn.Parameter(torch.zeros(n_shards, dim))
        scale = math.sqrt(2.0 / (dim + attention_dim))
        self.project = torch.nn.Parameter(
            torch.randn(dim, attention_dim, generator=generator) * scale
        )
        self.project_bias = torch.nn.Parameter(torch.zeros(attention_dim))
        self.query = torch.nn.Parameter(torch.randn(attention_dim, generator=generator) * scale)

    def forward(self, reps: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """reps: K x B x d frozen shard representations -> B x d aggregated representation."""
        transformed = torch.einsum("kbd,kde->kbe", reps, self.transform) + self.shift[:, None, :]
        logits = torch.relu(transformed @ self.project + self.project_bias) @ self.query  # K x B
        logits = logits.masked_fill(~present[:, None], -torch.inf)
        return (torch.softmax(logits, dim=0)[..., None] * transformed).sum(0)

    def penalty(self) -> torch.Tensor:
        eye = torch.eye(self.transform.shape[-1], device=self.transform.device)
        return ((self.transform - eye) ** 2).sum() + (self.project**2).sum() + (self.query**2).sum()


class AttentionAggregator(Aggregator):
    """RecEraser's aggregation: attention over transformed shard embeddings, trained on frozen shards."""

    def __init__(self, config: AttentionConfig):
        self.config = config
        self.users: _AttentionSide | None = None
        self.items: _AttentionSide | None = None

    @staticmethod
    @torch.no_grad()
    def _representations(
        models: Sequence[CFModel | None],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """K x n_users x d and K x n_items x d frozen representations (zeros for empty shards) and presence."""
        reference = next(m for m in models if m is not None)
        device = reference.user_emb.weight.device
        users, items = [], []
        for model in models:
            if model is None:
                users.append(torch.zeros(reference.n_users, reference.dim, device=device))
                items.append(torch.zeros(reference.n_items, reference.dim, device=device))
            else:
                u, i = model.representations()
                users.append(u.detach())
                items.append(i.detach())
        present = torch.tensor([m is not None for m in models], device=device)
        return torch.stack(users), torch.stack(items), present

    def _logits(self, reps, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Logits of pairs; each distinct user / item of the batch is aggregated once."""
        user_reps, item_reps, present = reps
        distinct_users, user_of_row = torch.unique(users, return_inverse=True)
        distinct_items, item_of_row = torch.unique(items, return_inverse=True)
        # index_select: its backward adds repeated rows in a fixed order on any number of threads
        e_u = self.users(user_reps.index_select(1, distinct_users), present).index_select(
            0, user_of_row
        )
        e_i = self.items(item_reps.index_select(1, distinct_items), present).index_select(
            0, item_of_row
        )
        return (e_u * e_i).sum(-1)

    def fit(self, models, train, valid, changed, assignment=None):
        config = self.config
        reps = self._representations(models)
        device = reps[0].device
        generator = torch.Generator().manual_seed(config.seed)
        n_shards, _, dim = reps[0].shape
        self.users = _AttentionSide(n_shards, dim, config.attention_dim, generator).to(device)
        self.items = _AttentionSide(n_shards, dim, config.attention_dim, generator).to(device)
        parameters = list(self.users.parameters()) + list(self.items.parameters())
        optimizer = torch.optim.Adam(parameters, lr=config.lr)
        pairwise = config.loss == "bpr"
        rows = train.positives() if pairwise else train
        users = torch.tensor(rows.user, device=device)
        items = torch.tensor(rows.item, device=device)
        labels = torch.tensor(rows.label, dtype=torch.float32, device=device)
        positives = torch.unique(users.cpu() * train.n_items + items.cpu()) if pairwise else None
        measure = self._validation_measure(reps, train, valid)
        epochs = config.epochs or (10 if pairwise else 2)

        def train_epoch(_: int) -> None:
            order = torch.randperm(len(users), generator=generator).to(device)
            for start in range(0, len(order), config.batch_size):
                idx = order[start : start + config.batch_size]
                logits = self._logits(reps, users[idx], items[idx])
                if pairwise:
                    negatives = sample_negatives(train.n_items, users[idx], generator, positives)
                    loss = bpr(logits, self._logits(reps, users[idx], negatives))
                else:
                    loss = F.binary_cross_entropy_with_logits(logits, labels[idx])
                loss = loss + config.l2 * (self.users.penalty() + self.items.penalty())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

        run = early_stopping(
            train_epoch,
            measure,
            lambda: [
                {k: v.detach().clone() for k, v in side.state_dict().items()}
                for side in (self.users, self.items)
            ],
            epochs,
        )
        best_state, best_score, best_epoch = run.best_state, run.best_score, run.best_epoch
        if best_state is not None:
            self.users.load_state_dict(best_state[0])
            self.items.load_state_dict(best_state[1])
        return {
            "epochs": epochs,
            "best_epoch": best_epoch or epochs,
            "valid_metric": "recall@20" if pairwise else "auc",
            "best_valid": round(best_score, 6) if best_state is not None else None,
            "training_rows": len(train),
            "training_data_hash": train.content_hash(),
        }

    def _validation_measure(self, reps, train: Interactions, valid: Interactions | None):
        """What picks the epoch: validation AUC, or Recall@20 of a ranking for BPR (None: undefined)."""
        if valid is None:
            return None
        if self.config.loss == "bpr":
            if not (valid.label > 0).any():
                return None
            task = RankingTask(train, valid, 20)
            return lambda: task.evaluate(lambda users: self._score_all(reps, users))["recall@20"]
        if len(np.unique(valid.label)) < 2:
            return None
        return lambda: float(
            roc_auc(valid.label, self._probabilities(reps, valid.user, valid.item))
        )

    @torch.no_grad()
    def _probabilities(self, reps, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        device = reps[0].device
        logits = self._logits(
            reps, torch.tensor(users, device=device), torch.tensor(items, device=device)
        )
        return torch.sigmoid(logits).cpu().numpy()

    def score(self, models, users, items):
        return self._probabilities(self._representations(models), users, items)

    def score_all(self, models, users, n_items):
        return torch.sigmoid(self._score_all(self._representations(models), users)).cpu().numpy()

    @torch.no_grad()
    def _score_all(self, reps, users: np.ndarray) -> torch.Tensor:
        user_reps, item_reps, present = reps
        e_u = self.users(user_reps[:, torch.as_tensor(users, device=user_reps.device)], present)
        return e_u @ self.items(item_reps, present).T

    def tensors(self):
        return {
            f"{side}.{k}": v
            for side, module in (("users", self.users), ("items", self.items))
            for k, v in module.state_dict().items()
        }

    def restore(self, tensors, models):
        reference = next(m for m in models if m is not None)
        device = reference.user_emb.weight.device
        generator = torch.Generator().manual_seed(self.config.seed)
        n_shards = tensors["users.transform"].shape[0]
        for side in ("users", "items"):
            module = _AttentionSide(n_shards, reference.dim, self.config.attention_dim, generator)
            module.load_state_dict(
                {k[len(side) + 1 :]: v for k, v in tensors.items() if k.startswith(side + ".")}
            )
            setattr(self, side, module.to(device))


class OwnerAggregator(Aggregator):
    """Per-user mean of the shard logits, weighted by the share of the user's training rows each shard
    holds (users without training rows: every non-empty shard alike). A function of the shard models
    and where the remaining rows are, so recounting it after a deletion is exact."""

    uses_validation = False

    def __init__(self, config: OwnerConfig):
        self.config = config
        self.weights: np.ndarray | None = None  # n_users x K, rows sum to 1

    def fit(self, models, train, valid, changed, assignment=None):
        counts = _rows_per_shard(len(models), train, assignment)
        self.weights = _owner_weights(models, counts)
        return {"users_with_rows": int((counts.sum(1) > 0).sum())}

    def _combine(self, models, users: np.ndarray, logits_of) -> np.ndarray:
        weights = self.weights[users]
        out: np.ndarray | None = None
        for k, model in enumerate(models):
            rows = np.flatnonzero(weights[:, k] > 0)
            if model is None or not len(rows):
                continue
            part = weights[rows, k, None] * logits_of(model, rows)
            if out is None:
                out = np.zeros((len(users), *part.shape[1:]))
            out[rows] += part
        return _sigmoid(out)

    def score(self, models, users, items):
        return self._combine(
            models, users, lambda m, rows: _shard_logits([m], users[rows], items[rows])[0][:, None]
        )[:, 0]

    def score_all(self, models, users, n_items):
        return self._combine(
            models, users, lambda m, rows: _shard_logits([m], users[rows], None, n_items)[0]
        )

    def tensors(self):
        return {"weights": torch.from_numpy(self.weights.copy())}

    def restore(self, tensors, models):
        self.weights = tensors["weights"].numpy().copy()


def _rows_per_shard(n_shards: int, train: Interactions, assignment) -> np.ndarray:
    """n_users x K: how many of each user's training rows each shard holds."""
    if assignment is None or len(assignment) != len(train):
        raise ValueError("this aggregator needs the shard of every training row")
    return np.bincount(
        train.user * n_shards + assignment, minlength=train.n_users * n_shards
    ).reshape(train.n_users, n_shards)


def _owner_weights(models, counts: np.ndarray) -> np.ndarray:
    """n_users x K: the share of each user's training rows each shard holds (users without rows:
    every non-empty shard alike)."""
    present = np.array([m is not None for m in models], dtype=np.float64)
    total = counts.sum(1, keepdims=True)
    return np.where(total > 0, counts / np.maximum(total, 1), present / max(present.sum(), 1))


def fold_in(
    items: torch.Tensor,
    users: torch.Tensor,
    positives: torch.Tensor,
    n_users: int,
    confidence: float,
    l2: float,
    steps: int,
) -> torch.Tensor:
    """User vectors for fixed item vectors ``items`` (n_items x d, float64), one per user, from the
    (``users``, ``positives``) rows: the implicit least-squares solution of Hu, Koren and Volinsky
    (2008), (V'V + alpha V_u'V_u + l2 I) p_u = (1 + alpha) V_u'1, by conjugate gradients batched
    over users. Each user's solve reads only that user's rows, and every step is elementwise per
    user, so a user's vector is a function of the items and the user's own rows."""
    gram = items.T @ items + l2 * torch.eye(items.shape[1], dtype=items.dtype)
    rows = items[positives]

    def apply(p: torch.Tensor) -> torch.Tensor:
        along = rows * (p[users] * rows).sum(1, keepdim=True)
        return p @ gram + confidence * torch.zeros_like(p).index_add_(0, users, along)

    target = torch.zeros(n_users, items.shape[1], dtype=items.dtype)
    target.index_add_(0, users, rows).mul_(1 + confidence)
    p, residual = torch.zeros_like(target), target.clone()
    direction, norm = residual.clone(), (residual * residual).sum(1, keepdim=True)
    for _ in range(steps):
        applied = apply(direction)
        step = norm / (direction * applied).sum(1, keepdim=True).clamp_min(1e-300)
        p += step * direction
        residual -= step * applied
        new_norm = (residual * residual).sum(1, keepdim=True)
        direction = residual + new_norm / norm.clamp_min(1e-300) * direction
        norm = new_norm
    return p


class FoldInAggregator(Aggregator):
    """A user's rows train one shard's model (over a user partition), so every other shard knows
    nothing of the user and its mean adds noise. Folding the user into each other shard by the
    shard's item vectors and the user's own rows lets every shard's item knowledge rank the user.

    Each shard's logits are standardised per user over all items, then combined: ``own_weight`` x
    the owner-weighted mean (the shards holding the user's rows, with their trained user vectors)
    plus the rest x the mean over every non-empty shard (trained vectors where the user has rows,
    fold-ins elsewhere). Fold-ins are a function of the shard models and the remaining rows, so
    refitting after a deletion gives what fitting from scratch gives. Needs models whose logit is
    the dot product of their representations (every built-in model)."""

    uses_validation = False

    def __init__(self, config: FoldInConfig):
        self.config = config
        self.weights: np.ndarray | None = None  # n_users x K owner weights
        self.users: list[torch.Tensor | None] = []  # per shard: n_users x d user vectors
        self.positives: np.ndarray | None = None  # per user: positive training rows

    def fit(self, models, train, valid, changed, assignment=None):
        counts = _rows_per_shard(len(models), train, assignment)
        self.weights = _owner_weights(models, counts)
        liked = np.flatnonzero(train.label > 0)
        positives = np.bincount(train.user[liked], minlength=train.n_users)
        # Rows are only ever removed: a user whose count is unchanged kept every row. When the only
        # users who lost rows lost all of them, a shard that was not retrained keeps its fold-ins
        # and those users' become zero, which is what the solve gives a user without rows.
        emptied = self._emptied(positives, len(models))
        user_index = torch.as_tensor(train.user[liked], dtype=torch.int64)
        item_index = torch.as_tensor(train.item[liked], dtype=torch.int64)
        solved = 0
        fitted: list[torch.Tensor | None] = []
        for k, model in enumerate(models):
            if model is None:
                fitted.append(None)
            elif emptied is not None and k not in changed and self.users[k] is not None:
                kept = self.users[k].clone()
                kept[emptied] = 0.0
                fitted.append(kept)
            else:
                trained, items = _representations(model)
                folded = fold_in(
                    items,
                    user_index,
                    item_index,
                    train.n_users,
                    self.config.confidence,
                    self.config.l2,
                    self.config.cg_steps,
                )
                holds = torch.as_tensor(counts[:, k] > 0)
                folded[holds] = trained[holds]
                fitted.append(folded.float())
                solved += 1
        self.users, self.positives = fitted, positives
        return {"shards_folded_in": solved}

    def _emptied(self, positives: np.ndarray, n_shards: int) -> torch.Tensor | None:
        """Users who lost every row since the last fit, if nobody else lost any (None: refit all)."""
        if self.positives is None or len(self.users) != n_shards:
            return None
        if len(self.positives) != len(positives):
            return None
        lost = np.flatnonzero(self.positives != positives)
        if (positives[lost] > 0).any():
            return None
        return torch.as_tensor(lost, dtype=torch.int64)

    def _combine(self, models, users: np.ndarray, logits_of) -> np.ndarray:
        own = self.weights[users]
        present = [k for k, m in enumerate(models) if m is not None]
        mixed = own[:, present] / np.maximum(own[:, present].sum(1, keepdims=True), 1e-300)
        out: np.ndarray | None = None
        for j, k in enumerate(present):
            z = logits_of(models[k], k)
            share = self.config.own_weight
            weight = share * mixed[:, j] + (1 - share) / len(present)
            part = weight.reshape(-1, *[1] * (z.ndim - 1)) * z
            out = part if out is None else out + part
        return _sigmoid(out)

    def _standardised(self, model, k: int, users: np.ndarray, items: np.ndarray | None):
        """Shard ``k``'s logits of the users (against ``items``, or every item), less each user's
        mean over all items and divided by their spread: shards' logit scales differ."""
        _, item_vectors = _representations(model)
        u = self.users[k].double()[torch.tensor(users, dtype=torch.int64)]
        centre = item_vectors.mean(0)
        centred = item_vectors - centre
        covariance = centred.T @ centred / len(item_vectors)
        spread = ((u @ covariance) * u).sum(1).clamp_min(1e-24).sqrt()
        if items is None:
            logits = u @ centred.T
            return (logits / spread[:, None]).numpy()
        logits = (u * centred[torch.tensor(items, dtype=torch.int64)]).sum(1)
        return (logits / spread).numpy()

    def score(self, models, users, items):
        return self._combine(models, users, lambda m, k: self._standardised(m, k, users, items))

    def score_all(self, models, users, n_items):
        return self._combine(models, users, lambda m, k: self._standardised(m, k, users, None))

    def tensors(self):
        out = {
            "weights": torch.from_numpy(self.weights.copy()),
            "positives": torch.from_numpy(self.positives.copy()),
        }
        out.update({f"users.{k}": u for k, u in enumerate(self.users) if u is not None})
        return out

    def restore(self, tensors, models):
        self.weights = tensors["weights"].numpy().copy()
        self.positives = tensors["positives"].numpy().copy()
        self.users = [tensors.get(f"users.{k}") for k in range(len(models))]


@torch.no_grad()
def _representations(model: CFModel) -> tuple[torch.Tensor, torch.Tensor]:
    users, items = model.representations()
    return users.detach().double().cpu(), items.detach().double().cpu()


def build_aggregator(
    config: AverageConfig | AttentionConfig | WeightedConfig | OwnerConfig | FoldInConfig,
) -> Aggregator:
    """The aggregator a config names."""
    if config.kind == "average":
        return AverageAggregator(config)
    if config.kind == "attention":
        return AttentionAggregator(config)
    if config.kind == "owner":
        return OwnerAggregator(config)
    if config.kind == "foldin":
        return FoldInAggregator(config)
    return WeightedAggregator(config)
