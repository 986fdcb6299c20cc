"""Where shard training runs. Shard-based methods hand a list of jobs to an executor and get the trained
parameters back, in the order of the jobs; nothing else knows which executor ran them.

- ``inprocess`` (default): one after another in this process.
- ``process``: a local pool of spawned processes, one torch thread each (``RECUNLEARN_WORKERS``
  processes, default the number of CPUs). The pool is kept for later calls, so a ``forget`` after
  ``fit`` does not pay the start-up again; :func:`shutdown_executors` ends it.
- ``ray``: tasks on a Ray cluster (``pip install 'recunlearn[ray]'``). Uses the cluster this process
  is connected to, or connects with ``ray.init()`` (which honours ``RAY_ADDRESS``; without it a
  local instance starts). Each task asks for one CPU, and one GPU when the cluster has GPUs and the
  job may use CUDA.

Jobs and results are plain data (tables, configs, CPU tensors) and the job function must be defined
at module level, so pools and Ray can ship both; they travel between processes with the standard
serialisers of ``multiprocessing`` and Ray, never to disk. Training is a pure function of the job:
on CPU with one thread every executor gives the same parameters bitwise.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import torch

from recunlearn.data.interactions import Interactions
from recunlearn.errors import ConfigError
from recunlearn.models.config import LightGCNConfig, MFConfig
from recunlearn.train.loop import TrainConfig, fit_model
from recunlearn.train.runtime import DEVICE_ENV, PROGRESS_ENV, configure_threads

Job = TypeVar("Job")
Result = TypeVar("Result")

WORKERS_ENV = "RECUNLEARN_WORKERS"
"""Number of processes of the 'process' executor (default: the number of CPUs)."""


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
    info = {
        "epochs": result.epochs,
        "best_epoch": result.best_epoch,
        "valid_metric": result.valid_metric,
        "best_valid": round(result.best_valid, 6),
        "seconds": round(result.seconds, 4),
        "rows": len(job.train),
        "data_hash": job.train.content_hash(),
    }
    return ShardResult(job.shard, state, info)


class Executor(Protocol):
    def map(self, fn: Callable[[Job], Result], jobs: Sequence[Job]) -> list[Result]:
        """``[fn(job) for job in jobs]``, wherever it runs; results in the order of ``jobs``."""
        ...


class InProcessExecutor:
    """Shards one after another in this process (the default)."""

    def map(self, fn, jobs):
        return [fn(job) for job in jobs]


def _worker_environment() -> dict[str, str]:
    """What a worker must share with this process: one thread, and the device and progress choices."""
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    for name in (DEVICE_ENV, PROGRESS_ENV):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


def _run_job(fn: Callable[[Job], Result], job: Job, env: dict[str, str]) -> Result:
    """Run one job in a worker with this process's settings (one torch thread)."""
    os.environ.update(env)
    torch.set_num_threads(int(env["OMP_NUM_THREADS"]))
    return fn(job)


_POOL: ProcessPoolExecutor | None = None
_POOL_WORKERS = 0


def _process_pool(workers: int) -> ProcessPoolExecutor:
    global _POOL, _POOL_WORKERS
    if _POOL is None or _POOL_WORKERS != workers:
        shutdown_executors()
        _POOL = ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn")
        )
        _POOL_WORKERS = workers
    return _POOL


def shutdown_executors() -> None:
    """End the process pool kept between calls (it is also ended when Python exits)."""
    global _POOL, _POOL_WORKERS
    if _POOL is not None:
        _POOL.shutdown(wait=True, cancel_futures=True)
    _POOL, _POOL_WORKERS = None, 0


atexit.register(shutdown_executors)


class ProcessExecutor:
    """A local pool of spawned processes with one torch thread each.

    Spawned (not forked) so that workers never inherit torch's thread pools or locks mid-use; a single
    job runs in this process, since shipping it would only add start-up time, on one torch thread as
    a worker would (a CPU float sum's order depends on the thread count, and a shard retrained alone
    must equal the same shard retrained in a batch, bit for bit).
    """

    def __init__(self, workers: int | None = None):
        if workers is None:
            value = os.environ.get(WORKERS_ENV, "")
            if value and not (value.isdigit() and int(value) > 0):
                raise ConfigError(f"{WORKERS_ENV} must be a positive integer, got {value!r}")
            workers = int(value) if value else (os.cpu_count() or 1)
        if workers < 1:
            raise ConfigError(f"the process executor needs at least one worker, got {workers}")
        self.workers = workers

    def map(self, fn, jobs):
        jobs = list(jobs)
        if len(jobs) <= 1 or self.workers == 1:
            threads = (
                configure_threads()
            )  # applied now, so that training does not apply it over the 1 below
            torch.set_num_threads(1)
            try:
                return [fn(job) for job in jobs]
            finally:
                torch.set_num_threads(threads)
        env = _worker_environment()
        pool = _process_pool(self.workers)
        try:
            futures = [pool.submit(_run_job, fn, job, env) for job in jobs]
            return [future.result() for future in futures]
        except BrokenProcessPool:
            shutdown_executors()  # the next call starts a fresh pool
            raise RuntimeError(
                "a worker of the 'process' executor died (out of memory?); the pool was reset; "
                f"try fewer workers ({WORKERS_ENV})"
            ) from None


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("the 'ray' executor needs Ray: pip install 'recunlearn[ray]'") from None
    return ray


def _may_use_cuda(job: Any) -> bool:
    """True unless the job (its ``device``, its ``train_config.device``, else $RECUNLEARN_DEVICE) names
    a device other than CUDA."""
    device = (
        getattr(job, "device", None)
        or getattr(getattr(job, "train_config", None), "device", None)
        or os.environ.get(DEVICE_ENV)
    )
    return device is None or str(device).startswith("cuda")


class RayExecutor:
    """Tasks on a Ray cluster: one CPU each, and one GPU each when the cluster has GPUs."""

    def __init__(self):
        self.ray = _import_ray()
        if not self.ray.is_initialized():
            self.ray.init(include_dashboard=False, log_to_driver=False)

    def map(self, fn, jobs):
        ray = self.ray
        env = _worker_environment()
        has_gpu = ray.cluster_resources().get("GPU", 0) >= 1
        task = ray.remote(_run_job)
        refs = []
        for job in jobs:
            gpus = 1 if has_gpu and _may_use_cuda(job) else 0
            refs.append(task.options(num_cpus=1, num_gpus=gpus).remote(fn, job, env))
        return ray.get(refs)


_EXECUTORS: dict[str, Callable[[], Executor]] = {
    "inprocess": InProcessExecutor,
    "process": ProcessExecutor,
    "ray": RayExecutor,
}


def register_executor(name: str, factory: Callable[[], Executor]) -> None:
    _EXECUTORS[name] = factory


def available_executors() -> list[str]:
    return sorted(_EXECUTORS)


def get_executor(name: str) -> Executor:
    if name not in _EXECUTORS:
        raise ConfigError(f"unknown executor {name!r}; available: {', '.join(sorted(_EXECUTORS))}")
    return _EXECUTORS[name]()
