"""Typed model configurations and the factory that builds a model from one."""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import BeforeValidator, Field, SerializeAsAny

from recunlearn.data.interactions import Interactions
from recunlearn.models.base import CFModel
from recunlearn.models.registry import ModelSpec, register_model, spec_of


@register_model("mf")
class MFConfig(ModelSpec):
    """Matrix factorisation."""

    kind: Literal["mf"] = "mf"
    dim: int = Field(48, gt=0)
    """Embedding size (IFRU uses 48-64)."""
    init_std: float = Field(0.01, gt=0)
    """Standard deviation of the normal initialisation of embeddings (a much larger one, such as 0.1,
    trains to a worse optimum under the IFRU protocol)."""

    def build(self, n_users: int, n_items: int, generator: torch.Generator) -> CFModel:
        from recunlearn.models.mf import MF

        return MF(n_users, n_items, self.dim, self.init_std, generator)


@register_model("lightgcn")
class LightGCNConfig(ModelSpec):
    """LightGCN over the positive-label training graph."""

    kind: Literal["lightgcn"] = "lightgcn"
    dim: int = Field(32, gt=0)
    """Embedding size (IFRU uses 32)."""
    n_layers: int = Field(1, ge=0)
    """Propagation layers; the output is the mean of layers 0..n_layers."""
    init_std: float = Field(0.01, gt=0)
    """Standard deviation of the normal initialisation. IFRU's reference code uses 1e-4, which
    leaves its LightGCN under-trained within the same early-stopping budget."""

    def build(self, n_users: int, n_items: int, generator: torch.Generator) -> CFModel:
        from recunlearn.models.lightgcn import LightGCN

        return LightGCN(
            n_users, n_items, self.dim, self.init_std, generator, n_layers=self.n_layers
        )


ModelConfig = Annotated[SerializeAsAny[ModelSpec], BeforeValidator(spec_of)]
"""A ``model`` field: any registered kind (``mf``, ``lightgcn``, or one registered with
:func:`~recunlearn.models.registry.register_model` or by an installed package)."""


def build_model(config: ModelSpec, data: Interactions, seed: int) -> CFModel:
    """A freshly initialised model for ``data``'s vocabularies, its graph built from ``data``."""
    model = config.build(data.n_users, data.n_items, torch.Generator().manual_seed(seed))
    model.set_graph(data)
    return model
