"""Where shard training runs. Shard-based methods hand a list of :class:`ShardJob` to an executor and
get the trained parameters back; nothing else knows which executor ran them.

Jobs and results are plain data (tables, configs, tensors), so process pools and Ray can ship them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from recunlearn.data.interactions import Interactions
from recunlearn.errors import ConfigError
from recunlearn.models.config import LightGCNConfig, MFConfig
from recunlearn.train.loop import TrainConfig, fit_model


@dataclass(frozen=True)
class ShardJob:
    """Train one shard's model from scratch."""

    shard: int
    model: MFConfig | LightGCNConfig
    train_config: TrainConfig
    train: Interactions
    valid: Interactions | None


@dataclass
class ShardResult:
    shard: int
    state: dict[str, torch.Tensor]
    info: dict[str, Any]


def train_shard(job: ShardJob) -> ShardResult:
    """Pure function of the job: the same job gives the same parameters bitwise (on CPU)."""
    result = fit_model(job.model, job.train, job.valid, job.train_config, desc=f"shard {job.shard}")
    state = {k: v.detach().cpu() for k, v in result.model.state_dict().items()}
    info = {"epochs": result.epochs, "best_epoch": result.best_epoch,
            "best_valid_auc": round(result.best_valid_auc, 6), "seconds": round(result.seconds, 4),
            "rows": len(job.train), "data_hash": job.train.content_hash()}
    return ShardResult(job.shard, state, info)


class Executor(Protocol):
    def map(self, fn: Callable[[ShardJob], ShardResult], jobs: Sequence[ShardJob]) -> list[ShardResult]: ...


class InProcessExecutor:
    """Shards one after another in this process (the default)."""

    def map(self, fn, jobs):
        return [fn(job) for job in jobs]


_EXECUTORS: dict[str, Callable[[], Executor]] = {"inprocess": InProcessExecutor}


def register_executor(name: str, factory: Callable[[], Executor]) -> None:
    _EXECUTORS[name] = factory


def get_executor(name: str) -> Executor:
    if name not in _EXECUTORS:
        raise ConfigError(f"unknown executor {name!r}; available: {', '.join(sorted(_EXECUTORS))}")
    return _EXECUTORS[name]()
