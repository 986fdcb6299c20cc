"""recunlearn: make recommenders forget.

Layers, imported in one direction only: ``data`` -> ``models`` -> ``train`` -> ``unlearn`` ->
``evaluate`` -> ``bench`` / ``service`` / ``cli``.
"""

from recunlearn.data import DeletionRequest, Interactions, Split
from recunlearn.unlearn import Unlearner, UnlearningReport, available_methods, get_method

__version__ = "0.1.0"
__all__ = [
    "DeletionRequest",
    "Interactions",
    "Split",
    "Unlearner",
    "UnlearningReport",
    "available_methods",
    "get_method",
]
