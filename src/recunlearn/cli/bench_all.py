"""`recunlearn bench all` (every protocol, then one report) and `recunlearn bench scaling`."""

from __future__ import annotations

from pathlib import Path

import typer

from recunlearn.cli._app import bench_app
from recunlearn.cli._options import given, results_path, writable


@bench_app.command("all")
def bench_all(
    quick: bool = typer.Option(
        True,
        "--quick/--full",
        help="Quick presets (minutes on 2 cores) or the full protocols (hours).",
    ),
    protocols: list[str] | None = typer.Option(
        None,
        "--protocol",
        "-p",
        help="Protocols to run (repeat); default exact, ifru, apa, scaling.",
    ),
    out: Path = typer.Option(
        Path("benchmarks/results"),
        help="Results folder (<out>/<protocol>/..., suite and report beside).",
    ),
) -> None:
    """Run every benchmark protocol, keep the results with their commands, and write one report."""
    from rich.console import Console

    from recunlearn.bench.suite import PROTOCOLS, Protocol, SuiteConfig, run_suite

    for name in (
        protocols or []
    ):  # one asked for by name must exist (a default one may be missing: recorded)
        Protocol(name)
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
        None, "--size", "-n", help="Interactions (repeat); default 100k, 300k, 1M, 3M, 10M."
    ),
    methods: list[str] | None = typer.Option(
        None, "--method", "-m", help="Methods (repeat); default retrain, sisa, ifru."
    ),
    epochs: int = typer.Option(
        2, help="Training epochs at every size (no early stopping; --quick: 1 unless given)."
    ),
    quick: bool = typer.Option(
        False,
        help="25k-100k interactions, one epoch (about 80 s on 2 cores); the other "
        "options given apply on top.",
    ),
    out: Path = typer.Option(
        Path("benchmarks/results/scaling/synthetic.json"),
        help="Results JSON (markdown beside it); --quick without --out: quick.json in that "
        "folder; other --size/--method/--epochs without --out: custom.json there.",
    ),
) -> None:
    """Training and unlearning time and peak memory against data size, per method family; log-log slopes."""
    from recunlearn.bench.scaling import ScalingConfig, markdown_table, run_scaling_benchmark

    custom = (
        not given(ctx, "out")
        and not quick
        and any(given(ctx, n) for n in ("sizes", "methods", "epochs"))
    )
    if custom:  # not the documented study's settings: never over the file the docs cite
        out = out.with_name("custom.json")
    out = results_path(ctx, out, "scaling", "quick" if quick else None)
    overrides: dict = {"output": str(out)}
    if sizes:
        overrides["sizes"] = sizes
    if methods:
        overrides["methods"] = methods
    config = ScalingConfig.quick(**overrides) if quick else ScalingConfig(**overrides)
    if not quick or given(ctx, "epochs"):
        config = config.model_copy(update={"train": {**config.train, "max_epochs": epochs}})
    results = run_scaling_benchmark(config)
    typer.echo(markdown_table(results.rows, results.summary["slopes"]))
    typer.echo(f"results: {out}")


@bench_app.command("executors")
def bench_executors(
    ctx: typer.Context,
    interactions: int = typer.Option(
        1_000_000, min=1, help="Rows of the synthetic log (each shard gets n / K)."
    ),
    shards: int = typer.Option(4, "--shards", "-k", min=1, help="Shards K."),
    epochs: int = typer.Option(3, min=1, help="Training epochs of every shard."),
    out: Path = typer.Option(
        Path("benchmarks/results/executors/mf-k4.json"),
        help="Results JSON (markdown beside it); other settings without --out: "
        "mf-k<K>-n<interactions>-e<epochs>.json in that folder.",
    ),
) -> None:
    """SISA's K MF shards trained in-process (1 thread, all cores) and in the process pool (cold, warm)."""
    from recunlearn.bench.scaling import ExecutorBenchConfig, run_executors_benchmark

    if not given(ctx, "out") and any(given(ctx, n) for n in ("interactions", "shards", "epochs")):
        out = out.with_name(
            f"mf-k{shards}-n{interactions}-e{epochs}.json"
        )  # never over the cited default run
    out = writable(out)
    config = ExecutorBenchConfig(n_interactions=interactions, n_shards=shards, output=str(out))
    config = config.model_copy(update={"train": {**config.train, "max_epochs": epochs}})
    run_executors_benchmark(config)
    typer.echo(out.with_suffix(".md").read_text())
