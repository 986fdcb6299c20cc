"""`recunlearn bench all` (every protocol, then one report) and `recunlearn bench scaling`."""

from __future__ import annotations

from pathlib import Path

import typer

from recunlearn.cli import _options as opt
from recunlearn.cli._app import bench_app


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
    opt.writable_folder(out, create=False)
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
    methods: list[str] | None = opt.methods_option(
        "retrain, sisa, ifru.",
    ),
    max_epochs: int | None = opt.max_epochs_option(
        "Training epochs at every size (no early stopping); default 2 (--quick: 1)"
    ),
    seeds: list[int] | None = opt.seeds_option(
        "Seed of the synthetic logs, the forgotten rows and training (repeat): one run and one "
        "results file per seed; default 0."
    ),
    quick: bool = opt.quick_option(
        "25k-100k interactions, one epoch (about 80 s on 2 cores); the other options given "
        "apply on top."
    ),
    out: Path = opt.out_option("scaling"),
) -> None:
    """Training and unlearning time and peak memory against data size, per method family; log-log slopes."""
    from rich.console import Console

    from recunlearn.bench.scaling import ScalingConfig, markdown_table, run_scaling_benchmark

    custom = not quick and any(opt.given(ctx, n) for n in ("sizes", "methods", "max_epochs"))
    configuration = "quick" if quick else "custom" if custom else "synthetic"
    console = Console()
    for seed, path in opt.seed_files(out, configuration, seeds):
        overrides: dict = {"output": str(path), **opt.given_lists(sizes=sizes, methods=methods)}
        if seed is not None:
            overrides.update(data_seed=seed, deletion_seed=seed)
        config = ScalingConfig.quick(**overrides) if quick else ScalingConfig(**overrides)
        config = opt.with_training(config, max_epochs, seed)
        opt.run_and_show(
            run_scaling_benchmark, config, markdown_table, console, dimmed_progress=False
        )


@bench_app.command("executors")
def bench_executors(
    ctx: typer.Context,
    interactions: int = typer.Option(
        1_000_000, min=1, metavar="N", help="Rows of the synthetic log (each shard gets n / K)."
    ),
    shards: int = typer.Option(4, "--shards", "-k", min=1, metavar="K", help="Shards K."),
    max_epochs: int | None = opt.max_epochs_option("Training epochs of every shard; default 3."),
    seeds: list[int] | None = opt.seeds_option(
        "Seed of the synthetic log and of training (repeat): one run and one results file per "
        "seed; default 0."
    ),
    quick: bool = opt.quick_option(
        "Seconds: 40k interactions, one epoch; the other options given apply on top."
    ),
    out: Path = opt.out_option("executors"),
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
        if opt.given(ctx, "interactions") or opt.given(ctx, "max_epochs"):
            configuration += f"-n{interactions}-e{max_epochs or 3}"
    console = Console()
    for seed, path in opt.seed_files(out, configuration, seeds):
        overrides: dict = {"output": str(path), "n_shards": shards}
        if not quick or opt.given(ctx, "interactions"):
            overrides["n_interactions"] = interactions
        if seed is not None:
            overrides["data_seed"] = seed
        config = (
            ExecutorBenchConfig.quick(**overrides) if quick else ExecutorBenchConfig(**overrides)
        )
        config = opt.with_training(config, max_epochs, seed)
        opt.run_and_show(
            run_executors_benchmark, config, executors_table, console, dimmed_progress=False
        )
