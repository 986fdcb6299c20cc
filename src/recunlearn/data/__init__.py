"""Datasets, splits and deletion sets."""

from recunlearn.data.deletion import (
    DeletionRequest,
    fake_positive_attack,
    fake_user_attack,
    item_deletion,
    label_flip_attack,
    random_interactions,
    user_deletion,
)
from recunlearn.data.download import fetch
from recunlearn.data.interactions import Interactions, Split, Vocabulary
from recunlearn.data.loaders import load_amazon, load_bookcrossing, load_table
from recunlearn.data.registry import (
    available_datasets,
    load_dataset,
    register_dataset,
    register_detector,
)
from recunlearn.data.samples import SampleTable
from recunlearn.data.splits import (
    binarize,
    ifru_protocol,
    implicit_protocol,
    k_core,
    per_user_split,
    positive_interactions,
    random_split,
    temporal_leave_last,
)
from recunlearn.data.synthetic import SyntheticConfig, synthetic
from recunlearn.data.table import Table

__all__ = [
    "DeletionRequest",
    "Interactions",
    "SampleTable",
    "Split",
    "Table",
    "SyntheticConfig",
    "Vocabulary",
    "available_datasets",
    "fake_positive_attack",
    "fake_user_attack",
    "binarize",
    "fetch",
    "ifru_protocol",
    "implicit_protocol",
    "item_deletion",
    "k_core",
    "label_flip_attack",
    "load_amazon",
    "load_bookcrossing",
    "load_dataset",
    "load_table",
    "per_user_split",
    "positive_interactions",
    "random_interactions",
    "random_split",
    "register_dataset",
    "register_detector",
    "synthetic",
    "temporal_leave_last",
    "user_deletion",
]
