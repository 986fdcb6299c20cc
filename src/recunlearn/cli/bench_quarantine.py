"""`recunlearn bench quarantine`: quarantine against forget for the partition methods."""

from __future__ import annotations

from pathlib import Path

import typer

from recunlearn.cli._app import bench_app
from recunlearn.cli._options import refuse, results_path


@bench_app.command("quarantine")
def quarantine(
    ctx: typer.Context,
    dataset: str = typer.Option(
        "ml-100k-shared", help="Dataset name or path (default: ML-100K from ../shared/data)."
    ),
    shards: int = typer.Option(10, "--shards", "-k", help="K of SISA, RecEraser, GraphEraser."),
    methods: list[str] | None = typer.Option(
        None, "--method", "-m", help="Methods (repeat); default sisa, receraser, grapheraser."
    ),
    apa: bool = typer.Option(True, help="Also APA at K=4 on `bench apa`'s demo prompts."),
    quick: bool = typer.Option(
        False, help="Seconds-long smoke run on a small synthetic log and a tiny language model."
    ),
    out: Path = typer.Option(
        Path("benchmarks/results/quarantine/ml100k-k10-cpu.json"),
        help="Results JSON (markdown beside it); --quick without --out: quick.json in that folder.",
    ),
) -> None:
    """Time from quarantine call to return against forget, and utility while quarantined and after repair."""
    from rich.console import Console

    from recunlearn.bench.experiment import DataSpec
    from recunlearn.bench.quarantine import (
        QuarantineBenchConfig,
        markdown_table,
        run_quarantine_benchmark,
    )

    console = Console()
    out = results_path(ctx, out, "quarantine", "quick" if quick else None)
    overrides: dict = {"output": str(out)}
    if methods is not None:
        overrides["methods"] = methods
    if not apa:
        overrides["apa"] = None
    if quick:
        refuse(ctx, ("dataset", "shards"), "--quick runs on its own small synthetic log; drop one")
        config = QuarantineBenchConfig.quick(**overrides)
    else:
        config = QuarantineBenchConfig(data=DataSpec(dataset=dataset), n_shards=shards, **overrides)
    results = run_quarantine_benchmark(config, log=lambda m: console.print(f"[dim]{m}[/dim]"))
    typer.echo(markdown_table(results))
    console.print(f"results: {out}")
