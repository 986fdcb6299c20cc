"""Shared pieces of methods built on one or more MF/LightGCN models."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from recunlearn.data.interactions import Interactions
from recunlearn.models.base import CFModel
from recunlearn.models.config import MFConfig, ModelConfig, build_model
from recunlearn.train.loop import TrainConfig, predict
from recunlearn.train.runtime import resolve_device


class CFMethodConfig(BaseModel):
    """Model and training settings shared by every method on MF / LightGCN."""

    model_config = ConfigDict(extra="forbid")
    model: ModelConfig = Field(default_factory=MFConfig)
    """The recommender: ``{kind = "mf", dim = 48}``, ``{kind = "lightgcn", dim = 32, n_layers = 1}``, or a kind
    registered with ``register_model`` or by an installed package (docs/own-model.md)."""
    train: TrainConfig = Field(default_factory=TrainConfig)
    """Optimiser, batch size, early stopping, seed."""


def model_state(model: CFModel, prefix: str) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in model.state_dict().items()}


def restore_model(
    config: CFMethodConfig,
    data: Interactions,
    tensors: dict[str, torch.Tensor],
    prefix: str,
    seed: int,
) -> CFModel:
    """Rebuild a model (its graph from ``data``) and load its saved parameters."""
    model = build_model(config.model, data, seed)
    state = {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
    model.load_state_dict(state)
    return model.to(resolve_device(config.train.device)).eval()


@torch.no_grad()
def all_item_probabilities(model: CFModel, users: np.ndarray) -> np.ndarray:
    device = model.user_emb.weight.device
    return torch.sigmoid(model.score_all(torch.as_tensor(users, device=device))).cpu().numpy()


class SingleModelMixin:
    """Scoring and persistence of a method that holds one model in ``self.model`` (and ``self.fit_info``)."""

    def _score_index(self, users, items):
        return predict(self.model, users, items)

    def score_all(self, users):
        self._check_fitted()
        return all_item_probabilities(self.model, np.asarray(users, np.int64))

    def _state(self):
        return model_state(self.model, "model"), {"fit": self.fit_info}

    def _restore(self, tensors, meta):
        self.model = restore_model(
            self.config, self.train, tensors, "model", self.config.train.seed
        )
        self.fit_info = meta["fit"]


def describe_fit(result: Any) -> dict[str, Any]:
    return {
        "epochs": result.epochs,
        "best_epoch": result.best_epoch,
        "valid_metric": result.valid_metric,
        "best_valid": round(result.best_valid, 6),
        "seconds": round(result.seconds, 4),
    }
