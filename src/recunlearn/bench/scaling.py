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
from pydantic import BaseModel, ConfigDict, Field

from recunlearn.bench._memory import rss_mib
from recunlearn.bench._results import ResultsFile, make_results
from recunlearn.bench.experiment import MethodNames
from recunlearn.bench.report import slopes
from recunlearn.data import DeletionRequest, Interactions, load_dataset
from recunlearn.errors import ConfigError
from recunlearn.seeds import Seed
from recunlearn.unlearn import available_methods, get_method
from recunlearn.unlearn.base import make_config

FULL_SIZES = [100_000, 300_000, 1_000_000, 3_000_000, 10_000_000]


class ScalingConfig(BaseModel):
    """What `recunlearn bench scaling` runs."""

    model_config = ConfigDict(extra="forbid")
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
    output: str | None = "benchmarks/results/scaling/synthetic.json"
    """Results JSON (a markdown table beside it); None writes nothing."""

    @classmethod
    def quick(cls, **overrides: Any) -> ScalingConfig:
        """25k to 100k interactions, one epoch: about 80 s on 2 cores (78 s in
        benchmarks/results/suite-quick.json), mostly starting a fresh process per run."""
        values: dict[str, Any] = {
            "sizes": [25_000, 50_000, 100_000],
            "train": {"max_epochs": 1, "batch_size": 8192, "lr": 0.01},
            "output": None,
        }
        return cls.model_validate({**values, **overrides})


def _method_options(config: ScalingConfig, name: str) -> dict[str, Any]:
    fields = get_method(name).Config.model_fields
    options = dict(config.method_options.get(name, {}))
    if "model" in fields:
        options.setdefault("model", config.model)
    if "train" in fields:
        options.setdefault("train", config.train)
    return options


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


def run_scaling_benchmark(config: ScalingConfig, log=print) -> ResultsFile:
    """Run the study; returns the results (written to ``config.output`` when set)."""
    unknown = [m for m in config.methods if m not in available_methods("interactions")]
    if unknown:
        raise ConfigError(
            f"unknown method(s) {unknown}; available: {', '.join(available_methods('interactions'))}"
        )
    for name in (
        config.methods
    ):  # settings a method refuses fail now, not in a worker after the first sizes
        make_config(get_method(name).Config, _method_options(config, name), {})
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
    fitted = slopes(rows)
    results = make_results(
        rows,
        config,
        protocol="scaling",
        summary={"slopes": fitted},
        seconds=round(time.perf_counter() - start, 2),
    )
    if config.output:
        results.write(config.output, markdown_table(rows, fitted))
    return results


def markdown_table(rows: list[dict[str, Any]], fitted: dict[str, dict[str, float]]) -> str:
    lines = [
        "| method | interactions | fit s | forget s | peak memory +MiB |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['method']} | {r['n_interactions']:,} | {r['fit_seconds']:.2f} | {r['forget_seconds']:.3f} | "
        f"{r['peak_memory_mb']:.0f} |"
        for r in rows
    ]
    lines += ["", "| method | slope fit | slope forget | slope memory |", "|---|---:|---:|---:|"]
    lines += [
        f"| {m} | {s.get('fit_seconds', float('nan')):.2f} | {s.get('forget_seconds', float('nan')):.2f} | "
        f"{s.get('peak_memory_mb', float('nan')):.2f} |"
        for m, s in fitted.items()
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------- executors (scale-out)
class ExecutorBenchConfig(BaseModel):
    """What `recunlearn bench executors` runs: SISA's shard training under each executor."""

    model_config = ConfigDict(extra="forbid")
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
    output: str | None = "benchmarks/results/executors/mf-k4.json"
    """Results JSON (a markdown table beside it); None writes nothing."""

    @classmethod
    def quick(cls, **overrides: Any) -> ExecutorBenchConfig:
        """Seconds: 40k interactions, one epoch."""
        values: dict[str, Any] = {
            "n_interactions": 40_000,
            "train": {"max_epochs": 1, "batch_size": 2048, "lr": 0.01},
            "output": None,
        }
        return cls.model_validate({**values, **overrides})


def run_executors_benchmark(config: ExecutorBenchConfig, log=print) -> ResultsFile:
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
    results = make_results(
        rows,
        config,
        protocol="executors",
        seconds=round(time.perf_counter() - start, 2),
        summary={"rows_per_shard": config.n_interactions // config.n_shards, "cores": cores},
    )
    if config.output:
        lines = [
            "| run | fit s | speed-up vs in-process (1 thread) | same models |",
            "|---|---:|---:|---|",
        ]
        lines += [
            f"| {r['method']} | {r['fit_seconds']:.2f} | {r['speedup_vs_inprocess']:.2f}x | "
            f"{r['identical_to_inprocess']} |"
            for r in rows
        ]
        results.write(config.output, "\n".join(lines))
    return results
