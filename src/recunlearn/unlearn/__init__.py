"""Unlearning methods under one contract, registered by name.

Every module in this package that defines a method registers it with ``@register(name)``;
:func:`available_methods` imports them all, so adding a method touches one file (plus its test).
"""

from recunlearn.data.deletion import DeletionRequest
from recunlearn.unlearn.adopt import adopt_factors
from recunlearn.unlearn.base import (
    PartChange,
    Unlearner,
    UnlearningReport,
    available_methods,
    get_method,
    register,
)

__all__ = [
    "DeletionRequest",
    "PartChange",
    "Unlearner",
    "UnlearningReport",
    "adopt_factors",
    "available_methods",
    "get_method",
    "register",
]
