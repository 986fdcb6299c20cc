"""Unlearning methods under one contract, registered by name.

Every module in this package that defines a method registers it with ``@register(name)`` and is
named in :data:`~recunlearn.unlearn.base.METHOD_MODULES`, which :func:`available_methods` imports;
installed packages add theirs through entry points (:mod:`recunlearn.plugins`).
"""

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
    "PartChange",
    "Unlearner",
    "UnlearningReport",
    "adopt_factors",
    "available_methods",
    "get_method",
    "register",
]
