"""`recunlearn bench all` (every protocol, then one report) and `recunlearn bench scaling`."""

from __future__ import annotations

from pathlib import Path

import typer

from recunlearn.cli._app import bench_app
from recunlearn.cli._options import (
    given,
    max_epochs_option,
    methods_option,
    out_option,
    print_tables,
    quick_option,
    results_file,
    seed_runs,
    seeds_option,
    with_training,
    writable_folder,
)


@bench_app.command("all")
def bench_all(
    quick: bool = typer.Option(
        True,
        "--quick/--full",
        metavar="",
        help="Quick presets (minutes on 2 cores) or the full protocols (hours).",
    ),
    protocols: list[str] | None = typer.Option(
        None,
        "--protocol",
        "-p",
        metavar="NAME",
        help="Protocols to run (repeat); default exact, ifru, apa, scaling.",
    ),
    out: Path = typer.Option(
        Path("runs/bench-all"),
        "--out",
        metavar="FOLDER",
        help="Results folder: <out>/<protocol>/<quick|full>-<hardware>.json, the suite's record "
        "and the report beside them.",
    ),
) -> None:
    """Run every benchmark protocol, keep the results with their commands, and write one report."""
    from rich.console import Console

    from recunlearn.bench.suite import PROTOCOLS, Protocol, SuiteConfig, run_suite

    for name in (
        protocols or []
    ):  # one asked for by name must exist (a default one may be missing: recorded)
        Protocol(name)
    writable_folder(out, create=False)
    console = Console()
    config = SuiteConfig(
        mode="quick" if quick else "full", protocols=protocols or list(PROTOCOLS), out=str(out)
    )
    results = run_suite(
        config, log=lambda m: console.print(m, markup=False, highlight=False, soft_wrap=True)
    )
    for row in results.rows:
        detail = row.get("results") or row.get("detail", "")
        console.print(
            f"{row['protocol']:>8}: {row['status']:<8} {row.get('seconds', '-')!s:>8} s  {detail}",
            markup=False,
            highlight=False,
        )
    console.print(f"report: {results.summary['report']}", markup=False, highlight=False)
    if results.summary["failed"]:
        raise typer.Exit(1)


@bench_app.command("scaling")
def bench_scaling(
    ctx: typer.Context,
    sizes: list[int] | None = typer.Option(
        None,
        "--size",
        "-n",
        metavar="N",
        help="Interactions (repeat); default 100k, 300k, 1M, 3M, 10M.",
    ),
    methods: list[str] | None = methods_option(
        "retrain, sisa, ifru.",
    ),
    max_epochs: int | None = max_epochs_option(
        "Training epochs at every size (no early stopping); default 2 (--quick: 1)"
    ),
    seeds: list[int] | None = seeds_option(
        "Seed of the synthetic logs, the forgotten rows and training (repeat): one run and one "
        "results file per seed; default 0."
    ),
    quick: bool = quick_option(
        "25k-100k interactions, one epoch (about 80 s on 2 cores); the other options given "
        "apply on top."
    ),
    out: Path = out_option("scaling"),
) -> None:
    """Training and unlearning time and peak memory against data size, per method family; log-log slopes."""
    from rich.console import Console

    from recunlearn.bench.scaling import ScalingConfig, markdown_table, run_scaling_benchmark

    custom = not quick and any(given(ctx, n) for n in ("sizes", "methods", "max_epochs"))
    configuration = "quick" if quick else "custom" if custom else "synthetic"
    runs = [(seed, results_file(out, configuration, seed)) for seed in seed_runs(seeds)]
    console = Console()
    for seed, path in runs:
        overrides: dict = {"output": str(path)}
        if sizes:
            overrides["sizes"] = sizes
        if methods:
            overrides["methods"] = methods
        if seed is not None:
            overrides.update(data_seed=seed, deletion_seed=seed)
        config = ScalingConfig.quick(**overrides) if quick else ScalingConfig(**overrides)
        config = with_training(config, max_epochs, seed)
        results = run_scaling_benchmark(config)
        print_tables(markdown_table(results), console)
        console.print(f"results: {path}", markup=False, highlight=False)


@bench_app.command("executors")
def bench_executors(
    ctx: typer.Context,
    interactions: int = typer.Option(
        1_000_000, min=1, metavar="N", help="Rows of the synthetic log (each shard gets n / K)."
    ),
    shards: int = typer.Option(4, "--shards", "-k", min=1, metavar="K", help="Shards K."),
    max_epochs: int | None = max_epochs_option("Training epochs of every shard; default 3."),
    seeds: list[int] | None = seeds_option(
        "Seed of the synthetic log and of training (repeat): one run and one results file per "
        "seed; default 0."
    ),
    quick: bool = quick_option(
        "Seconds: 40k interactions, one epoch; the other options given apply on top."
    ),
    out: Path = out_option("executors"),
) -> None:
    """SISA's K MF shards trained in-process (1 thread, all cores) and in the process pool (cold, warm)."""
    from rich.console import Console

    from recunlearn.bench.scaling import (
        ExecutorBenchConfig,
        executors_table,
        run_executors_benchmark,
    )

    if quick:
        configuration = "quick"
    else:
        configuration = f"mf-k{shards}"
        if given(ctx, "interactions") or given(ctx, "max_epochs"):
            configuration += f"-n{interactions}-e{max_epochs or 3}"
    runs = [(seed, results_file(out, configuration, seed)) for seed in seed_runs(seeds)]
    console = Console()
    for seed, path in runs:
        overrides: dict = {"output": str(path), "n_shards": shards}
        if not quick or given(ctx, "interactions"):
            overrides["n_interactions"] = interactions
        if seed is not None:
            overrides["data_seed"] = seed
        config = (
            ExecutorBenchConfig.quick(**overrides) if quick else ExecutorBenchConfig(**overrides)
        )
        config = with_training(config, max_epochs, seed)
        results = run_executors_benchmark(config)
        print_tables(executors_table(results), console)
        console.print(f"results: {path}", markup=False, highlight=False)
