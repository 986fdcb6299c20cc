"""Each user folded into every shard that holds none of the user's rows, beside the owner shards."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from recunlearn.models.base import CFModel
from recunlearn.unlearn.aggregate.base import Aggregator, _sigmoid
from recunlearn.unlearn.aggregate.owner import _owner_weights, _rows_per_shard


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
