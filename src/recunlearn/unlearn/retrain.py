"""Retraining from scratch on the remaining data: the exact reference every other method is judged by."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import Field

from recunlearn.data.deletion import DeletionRequest
from recunlearn.train.loop import fit_model
from recunlearn.unlearn._cf import CFMethodConfig, SingleModelMixin, describe_fit
from recunlearn.unlearn.base import (
    CFUnlearner,
    PartChange,
    UnlearningReport,
    register,
    restored_on_error,
)
from recunlearn.unlearn.quarantine import RepairPolicy, SingleModelQuarantine


class RetrainConfig(CFMethodConfig):
    """Retraining: the model and its training, and how deletions are served before retraining."""

    quarantine_method: str = "ifru"
    """Approximate method that ``quarantine`` applies at once (reported approximate): 'ifru',
    'if', 'scif', 'finetune' or 'neggrad'; ``repair`` then retrains exactly."""
    quarantine_config: dict[str, Any] = Field(default_factory=dict)
    """Settings of the quarantine method beyond ``model`` and ``train`` (e.g. ``{"damping": 0.1}``)."""
    repair: RepairPolicy = Field(default_factory=RepairPolicy)
    """When quarantined requests are due for the exact retraining (:meth:`Retrain.repair_due`)."""


@register("retrain")
class Retrain(SingleModelQuarantine, SingleModelMixin, CFUnlearner):
    """One model; ``forget`` trains a new one from scratch (same seed) without the removed rows."""

    exact = True
    Config = RetrainConfig

    def _fit(self) -> None:
        result = fit_model(
            self.config.model, self.train, self.valid, self.config.train, desc="retrain"
        )
        self.model, self.fit_info = result.model, describe_fit(result)

    def _forget(self, mask: np.ndarray) -> UnlearningReport:
        before = self.train
        with restored_on_error(self, ("train",)):  # _fit rebinds the model only once it is trained
            self.train = self.train.drop(mask)
            self._fit()
        part = PartChange(
            part="model",
            action="retrained",
            data_hash_before=before.content_hash(),
            data_hash_after=self.train.content_hash(),
            rows_before=len(before),
            rows_after=len(self.train),
        )
        return self._report([part], fit=self.fit_info)

    def forget_many(self, requests: Sequence[DeletionRequest]) -> list[UnlearningReport]:
        """One retraining for the whole batch (N requests one by one would retrain the model N times);
        the model equals forgetting the union of their rows at once."""
        return self._forget_union(requests)
