"""Unlearning methods under one contract, registered by name.

Every module in this package that defines a method registers it with ``@register(name)`` and is
named in :data:`~recunlearn.unlearn.base.METHOD_MODULES`, which :func:`available_methods` imports;
installed packages add theirs through entry points (:mod:`recunlearn.plugins`).

``LLMUnlearner``, the family class of methods on prompt samples, is imported on first use: its module
brings in the language-model side (LoRA adapters, executors), which collaborative users never need.
"""

from typing import Any

from recunlearn.data.deletion import DeletionRequest
from recunlearn.unlearn.adopt import adopt_factors
from recunlearn.unlearn.base import (
    CFUnlearner,
    PartChange,
    Unlearner,
    UnlearningReport,
    available_methods,
    get_method,
    register,
)

__all__ = [
    "CFUnlearner",
    "DeletionRequest",
    "LLMUnlearner",
    "PartChange",
    "Unlearner",
    "UnlearningReport",
    "adopt_factors",
    "available_methods",
    "get_method",
    "register",
]


def __getattr__(name: str) -> Any:
    if name == "LLMUnlearner":
        from recunlearn.unlearn._llm_common import LLMUnlearner

        return LLMUnlearner
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
