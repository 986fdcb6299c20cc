"""Recommender models: MF, LightGCN, your own (:func:`register_model`), and (in ``models.llm``)
language-model recommenders."""

from recunlearn.models.base import CFModel
from recunlearn.models.config import LightGCNConfig, MFConfig, ModelConfig, build_model
from recunlearn.models.lightgcn import LightGCN
from recunlearn.models.mf import MF
from recunlearn.models.registry import ModelSpec, available_models, register_model

__all__ = [
    "CFModel",
    "LightGCN",
    "LightGCNConfig",
    "MF",
    "MFConfig",
    "ModelConfig",
    "ModelSpec",
    "available_models",
    "build_model",
    "register_model",
]
