"""Recommender models: MF, LightGCN, and (in ``models.llm``) language-model recommenders."""

from recunlearn.models.base import CFModel
from recunlearn.models.config import LightGCNConfig, MFConfig, ModelConfig, build_model
from recunlearn.models.lightgcn import LightGCN
from recunlearn.models.mf import MF

__all__ = ["CFModel", "LightGCN", "LightGCNConfig", "MF", "MFConfig", "ModelConfig", "build_model"]
