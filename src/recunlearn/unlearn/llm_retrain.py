"""Retraining for the language-model recommender: one LoRA adapter on all training samples; forgetting
trains a fresh adapter (same seed) on the rest. The exact reference every LLM method is compared with."""

from __future__ import annotations

from recunlearn.unlearn._llm_common import LLMMethodConfig, LLMUnlearner
from recunlearn.unlearn.base import register


@register("llm-retrain")
class LLMRetrain(LLMUnlearner):
    """One LoRA adapter on all prompt samples, retrained from scratch on the rest to forget."""

    Config = LLMMethodConfig
