"""The one early-stopping loop: train epoch by epoch, read a validation measure, keep the best state.

Collaborative models (:func:`recunlearn.train.loop.continue_training`), LoRA adapters
(:func:`recunlearn.train.adapter.train_adapter`) and the learned attention over shards
(:mod:`recunlearn.unlearn.aggregate`) all stop by this rule, so 'the best epoch' means the same thing
for each. It imports nothing of recunlearn, so the model layer can use it too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Stopped:
    """How an early-stopped run went."""

    epochs: int = 0
    """Epochs trained."""
    best_epoch: int = 0
    """The epoch (from 1) whose state was kept; 0 when no measure was ever better than -inf."""
    best_score: float = -math.inf
    best_state: Any = None
    """What ``snapshot`` returned at the best epoch (None: never measured, or never a finite gain)."""
    history: list[float] = field(default_factory=list)
    """Every measure read, in order."""


def early_stopping(
    train_epoch: Callable[[int], None],
    measure: Callable[[], float] | None,
    snapshot: Callable[[], Any],
    max_epochs: int,
    patience: int | None = None,
    every: int = 1,
) -> Stopped:
    """Call ``train_epoch(epoch)`` for epochs 1..``max_epochs``; after every ``every``-th epoch and the
    last, read ``measure()`` and keep ``snapshot()`` of the state when it beats every earlier one.
    Stops once ``patience`` x ``every`` epochs have passed since the best (None: never early).
    Without ``measure`` every epoch is trained and nothing is kept."""
    run = Stopped()
    for epoch in range(1, max_epochs + 1):
        train_epoch(epoch)
        run.epochs = epoch
        if measure is None or (epoch % every and epoch < max_epochs):
            continue
        score = measure()
        run.history.append(score)
        if score > run.best_score:
            run.best_score, run.best_epoch, run.best_state = score, epoch, snapshot()
        elif patience is not None and epoch - run.best_epoch >= patience * every:
            break
    return run
