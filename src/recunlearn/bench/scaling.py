"""Scaling study: how training time, unlearning time and memory grow with the data, per method family.

For each size (synthetic logs, 100k to 10M interactions by default) and each method (one per family:
retraining, partition = SISA, influence = IFRU), a fresh spawned process loads the log, fits the
method for a fixed number of epochs (no early stopping, so sizes are comparable) and forgets random
interactions, after a warm-up fit on 2,000 rows that pays the first-call costs (lazy imports, kernel
set-up). Each run is alone in its process so that its peak memory is its own: ``peak_memory_mb`` is
how far the peak resident memory rose above what the process held after loading and warming up;
``process_peak_mb`` is the process's whole peak. The report fits log-log slopes (cost ~ n^slope).
``recunlearn bench scaling`` runs this; :func:`run_scaling_benchmark` is the Python entry point.
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from recunlearn.bench._memory import rss_mib
from recunlearn.bench._protocol import BenchConfig, check_methods, finish, method_settings
from recunlearn.bench._results import markdown_grid
from recunlearn.bench.experiment import MethodNames
from recunlearn.bench.report import slopes
from recunlearn.data import DeletionRequest, Interactions, load_dataset
from recunlearn.seeds import Seed
from recunlearn.unlearn import available_methods, get_method

FULL_SIZES = [100_000, 300_000, 1_000_000, 3_000_000, 10_000_000]


class ScalingConfig(BenchConfig):
    """What `recunlearn bench scaling` runs."""

    sizes: list[int] = Field(default_factory=lambda: list(FULL_SIZES))
    """Interactions of the synthetic logs (users and items grow with them, 100 rows per user)."""
    methods: MethodNames = Field(default_factory=lambda: ["retrain", "sisa", "ifru"])
    """One method per family: retraining (the reference), partition (SISA), influence (IFRU)."""
    model: dict[str, Any] = Field(default_factory=lambda: {"kind": "mf", "dim": 32})
    """Model of every method."""
    train: dict[str, Any] = Field(
        default_factory=lambda: {"max_epochs": 2, "batch_size": 8192, "lr": 0.01}
    )
    """Training settings; runs without validation data, so every size trains ``max_epochs`` epochs."""
    method_options: dict[str, dict[str, Any]] = Field(
        default_factory=lambda: {"sisa": {"n_shards": 5}}
    )
    """Per-method settings."""
    deletion_rows: int = Field(1, ge=1)
    """Random training interactions forgotten in one request."""
    data_seed: Seed = 0
    """Seed of the synthetic generator."""
    deletion_seed: Seed = 0
    """Seed that picks the forgotten interactions."""

    @classmethod
    def quick_values(cls) -> dict[str, Any]:
        """25k to 100k interactions, one epoch: mostly the cost of a fresh process per run."""
        return {
            "sizes": [25_000, 50_000, 100_000],
            "train": {"max_epochs": 1, "batch_size": 8192, "lr": 0.01},
        }


def _method_options(config: ScalingConfig, name: str) -> dict[str, Any]:
    return method_settings(name, config.method_options, model=config.model, train=config.train)


def measure_one(
    data_path: str, name: str, options: dict[str, Any], deletion_rows: int, deletion_seed: int
) -> dict[str, Any]:
    """Fit and forget in this process; meant to run alone in a fresh one (see the module docstring)."""
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or 1))
    data = Interactions.load(data_path)
    warm_up = data.take(np.arange(min(len(data), 2000)))
    get_method(name)(options).fit(warm_up).forget(
        DeletionRequest.from_rows(warm_up, [0])
    )  # first-call costs
    del warm_up
    baseline = rss_mib("VmRSS")
    method = get_method(name)(options)
    start = time.perf_counter()
    method.fit(data)
    fit_seconds = time.perf_counter() - start
    rows = np.random.default_rng(deletion_seed).choice(len(data), deletion_rows, replace=False)
    report = method.forget(
        DeletionRequest.from_rows(method.train, np.isin(np.arange(len(data)), rows))
    )
    peak = rss_mib("VmHWM")
    return {
        "fit_seconds": round(fit_seconds, 3),
        "forget_seconds": round(report.seconds, 4),
        "peak_memory_mb": round(peak - baseline, 1),
        "process_peak_mb": round(peak, 1),
        "changed_parts": len(report.changed_parts),
    }


def run_scaling_benchmark(config: ScalingConfig, log=print) -> dict[str, Any]:
    """Run the study; returns (and writes, if ``config.output``) a results document."""
    check_methods(  # settings a method refuses fail now, not in a worker after the first sizes
        "scaling",
        config.methods,
        available_methods("interactions"),
        lambda name: [_method_options(config, name)],
    )
    start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as scratch:
        for size in sorted(config.sizes):
            data = load_dataset("synthetic", n_interactions=size, seed=config.data_seed)
            path = str(Path(scratch) / f"synthetic-{size}.npz")
            data.save(path)
            log(f"{size:,} interactions: {data.n_users:,} users, {data.n_items:,} items")
            del data
            for name in config.methods:
                with ProcessPoolExecutor(
                    1, mp_context=context
                ) as pool:  # a fresh process: its own peak memory
                    measured = pool.submit(
                        measure_one,
                        path,
                        name,
                        _method_options(config, name),
                        config.deletion_rows,
                        config.deletion_seed,
                    ).result()
                rows.append({"method": name, "n_interactions": size, **measured})
                log(
                    f"  {name}: fit {measured['fit_seconds']:.2f} s, forget {measured['forget_seconds']:.3f} s, "
                    f"+{measured['peak_memory_mb']:.0f} MiB"
                )
    return finish({"rows": rows, "slopes": slopes(rows)}, config, "scaling", start, markdown_table)


def markdown_table(results: dict[str, Any]) -> str:
    """Time and memory per (method, size), then the fitted log-log slopes per method."""
    sizes = markdown_grid(
        ["method", "interactions", "fit s", "forget s", "peak memory +MiB"],
        [
            [
                r["method"],
                f"{r['n_interactions']:,}",
                f"{r['fit_seconds']:.2f}",
                f"{r['forget_seconds']:.3f}",
                f"{r['peak_memory_mb']:.0f}",
            ]
            for r in results["rows"]
        ],
    )
    fitted = markdown_grid(
        ["method", "slope fit", "slope forget", "slope memory"],
        [
            [m]
            + [f"{s.get(key, float('nan')):.2f}" for key in ("fit_seconds", "forget_seconds")]
            + [f"{s.get('peak_memory_mb', float('nan')):.2f}"]
            for m, s in results["slopes"].items()
        ],
    )
    return sizes + "\n\n" + fitted


# ------------------------------------------------------------------------------- executors (scale-out)
class ExecutorBenchConfig(BenchConfig):
    """What `recunlearn bench executors` runs: SISA's shard training under each executor."""

    n_interactions: int = Field(1_000_000, ge=1000)
    """Rows of the synthetic log (each shard trains on about n / K of them)."""
    n_shards: int = Field(4, ge=2)
    """Shards K, trained from scratch in one ``fit``."""
    model: dict[str, Any] = Field(default_factory=lambda: {"kind": "mf", "dim": 32})
    """Model of every shard."""
    train: dict[str, Any] = Field(
        default_factory=lambda: {"max_epochs": 3, "batch_size": 2048, "lr": 0.01}
    )
    """Training settings; no validation data, so every shard trains ``max_epochs`` epochs."""
    data_seed: Seed = 0
    """Seed of the synthetic generator."""

    @classmethod
    def quick_values(cls) -> dict[str, Any]:
        """Seconds: 40k interactions, one epoch."""
        return {
            "n_interactions": 40_000,
            "train": {"max_epochs": 1, "batch_size": 2048, "lr": 0.01},
        }


def run_executors_benchmark(config: ExecutorBenchConfig, log=print) -> dict[str, Any]:
    """Time SISA's ``fit`` (K shards) in-process with one thread and with every core, and in the process
    pool when it must start (cold: spawning workers that import torch) and when it is already running
    (warm, as for a later ``forget``), after an untimed warm-up fit in this process. Checks that every
    run gives the same shard models as in-process training with one thread."""
    import torch

    from recunlearn.unlearn.executors import shutdown_executors

    data = load_dataset("synthetic", n_interactions=config.n_interactions, seed=config.data_seed)
    options = {"n_shards": config.n_shards, "model": config.model, "train": config.train}
    cores = os.cpu_count() or 1
    threads_before = torch.get_num_threads()
    runs = [
        ("inprocess", 1, "-"),
        ("inprocess", cores, "-"),
        ("process", 1, "cold"),
        ("process", 1, "warm"),
    ]
    rows: list[dict[str, Any]] = []
    reference = None
    start = time.perf_counter()
    get_method("sisa")(options).fit(
        data.take(np.arange(min(len(data), 2000)))
    )  # first-call costs, not timed
    shutdown_executors()
    try:
        for executor, threads, pool in runs:
            torch.set_num_threads(threads)
            method = get_method("sisa")({**options, "executor": executor})
            began = time.perf_counter()
            method.fit(data)
            seconds = time.perf_counter() - began
            states = [m.state_dict() for m in method.models]
            if reference is None:
                reference = states
            identical = all(torch.equal(a[n], b[n]) for a, b in zip(states, reference) for n in a)
            rows.append(
                {
                    "method": f"sisa {executor} ({threads} thread{'s' if threads > 1 else ''}"
                    f"{', pool ' + pool if pool != '-' else ''})",
                    "executor": executor,
                    "torch_threads": threads,
                    "pool": pool,
                    "n_shards": config.n_shards,
                    "fit_seconds": round(seconds, 3),
                    "identical_to_inprocess": identical,
                }
            )
            log(f"{rows[-1]['method']}: {seconds:.2f} s, identical: {identical}")
    finally:
        shutdown_executors()
        torch.set_num_threads(threads_before)
    base = rows[0]["fit_seconds"]
    for row in rows:
        row["speedup_vs_inprocess"] = round(base / max(row["fit_seconds"], 1e-9), 2)
    summary = {"rows_per_shard": config.n_interactions // config.n_shards, "cores": cores}
    return finish({"rows": rows, **summary}, config, "executors", start, executors_table)


def executors_table(results: dict[str, Any]) -> str:
    """One line per run: fit time, speed-up over one thread in-process, same models or not."""
    return markdown_grid(
        ["run", "fit s", "speed-up vs in-process (1 thread)", "same models"],
        [
            [
                r["method"],
                f"{r['fit_seconds']:.2f}",
                f"{r['speedup_vs_inprocess']:.2f}x",
                str(r["identical_to_inprocess"]),
            ]
            for r in results["rows"]
        ],
    )
