"""Training: one loop with early stopping, the shared objectives, device and thread choice."""

from recunlearn.train.loop import (
    FitResult,
    TrainConfig,
    batch_loss,
    continue_training,
    fit_model,
    predict,
    valid_auc,
)
from recunlearn.train.runtime import (
    allocator_settings,
    configure_threads,
    resolve_device,
    retain_freed_memory,
    show_progress,
)

__all__ = [
    "FitResult",
    "TrainConfig",
    "allocator_settings",
    "batch_loss",
    "configure_threads",
    "continue_training",
    "fit_model",
    "predict",
    "resolve_device",
    "retain_freed_memory",
    "show_progress",
    "valid_auc",
]
