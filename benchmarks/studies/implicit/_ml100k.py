"""What every implicit study starts from: ``bench implicit``'s split of the shared MovieLens-100K
(``$RECUNLEARN_ML100K``, else ``../shared/data/ml-100k``) and one deletion of it."""

import os

from recunlearn.bench.experiment import prepare
from recunlearn.bench.implicit import ImplicitBenchConfig, deletion


def study_split(removal: str, seed: int):
    """(config, split, request): the split with ``removal``'s injected data, if any, and its request
    ('users' deletes one user)."""
    config = ImplicitBenchConfig.model_validate(
        {
            "data": {
                "dataset": os.environ.get("RECUNLEARN_ML100K", "../shared/data/ml-100k"),
                "protocol": "implicit",
                "threshold": 3.0,
            },
            "users": 1,
        }
    )
    split, request = deletion(config, removal, prepare(config.data), seed)
    return config, split, request
