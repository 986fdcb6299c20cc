"""Fine-tuning baseline: a few more epochs of training on the remaining data only."""

from __future__ import annotations

from pydantic import Field

from recunlearn.train.loop import continue_training
from recunlearn.unlearn._approximate import ApproximateUnlearner
from recunlearn.unlearn._cf import CFMethodConfig
from recunlearn.unlearn.base import register


class FineTuneConfig(CFMethodConfig):
    """How long and how fast the remaining data is trained on."""

    epochs: int = Field(2, ge=1)
    """Epochs on the remaining data (the best by validation AUC is kept when there is validation data)."""
    lr: float | None = Field(None, gt=0)
    """Adam learning rate; default the training one."""


@register("finetune")
class FineTune(ApproximateUnlearner):
    """Train the model a few epochs on what remains (the graph already without the deleted edges)."""

    Config = FineTuneConfig

    def _update(self, removed, remaining, graph_full, graph_after, orphaned):
        if graph_after is not None:
            self.model.adjacency = self._after_adjacency(graph_after)
        settings = self.config.train.model_copy(
            update={
                "max_epochs": self.config.epochs,
                "patience": self.config.epochs,
                "lr": self.config.lr or self.config.train.lr,
            }
        )
        result = continue_training(self.model, remaining, self.valid, settings, desc="finetune")
        return {"epochs": result.epochs, "best_epoch": result.best_epoch}
