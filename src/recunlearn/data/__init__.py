"""Datasets, splits and deletion sets."""

from recunlearn.data.deletion import (
    DeletionRequest,
    item_deletion,
    label_flip_attack,
    random_interactions,
    user_deletion,
)
from recunlearn.data.interactions import Interactions, Split, Vocabulary
from recunlearn.data.registry import available_datasets, load_dataset
from recunlearn.data.splits import binarize, ifru_protocol, k_core, random_split, temporal_leave_last

__all__ = [
    "DeletionRequest",
    "Interactions",
    "Split",
    "Vocabulary",
    "available_datasets",
    "binarize",
    "ifru_protocol",
    "item_deletion",
    "k_core",
    "label_flip_attack",
    "load_dataset",
    "random_interactions",
    "random_split",
    "temporal_leave_last",
    "user_deletion",
]
