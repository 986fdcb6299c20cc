"""RecEraser's learned attention over the shard models' embeddings."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from recunlearn.data.interactions import Interactions
from recunlearn.models.base import CFModel
from recunlearn.seeds import Seed
from recunlearn.train.auc import roc_auc
from recunlearn.train.loop import sample_negatives
from recunlearn.train.losses import bpr
from recunlearn.train.ranking import RankingTask
from recunlearn.train.stopping import early_stopping
from recunlearn.unlearn.aggregate.base import Aggregator


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
