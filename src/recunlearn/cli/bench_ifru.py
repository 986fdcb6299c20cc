"""`recunlearn bench ifru`: IFRU and the approximate baselines on the label-flip protocol."""

from __future__ import annotations

from pathlib import Path

import typer

from recunlearn.cli._app import bench_app
from recunlearn.cli._options import refuse, results_path, writable


@bench_app.command("ifru")
def ifru(
    ctx: typer.Context,
    dataset: str = typer.Option(
        "ml-100k-shared", help="Dataset name or path (default: ML-100K from ../shared/data)."
    ),
    models: list[str] | None = typer.Option(
        None, "--model", help="mf / lightgcn (repeat); default both."
    ),
    fractions: list[float] | None = typer.Option(
        None, "--fraction", help="Flipped fraction (repeat); default 0.02."
    ),
    seeds: list[int] | None = typer.Option(None, "--seed", help="Seeds (repeat); default 0."),
    methods: list[str] | None = typer.Option(
        None,
        "--method",
        "-m",
        help="Methods (repeat); default retrain, sisa, if, scif, finetune, neggrad, ifru.",
    ),
    quick: bool = typer.Option(
        False, help="Seconds-long smoke run on a small synthetic log, instead of --dataset."
    ),
    out: Path = typer.Option(
        Path("benchmarks/results/ifru/ml100k.json"),
        help="Results JSON (markdown beside it); --quick without --out: quick.json in that folder.",
    ),
) -> None:
    """Approximate unlearning of label-flipped data: utility, completeness, time and speed-up over retraining."""
    from rich.console import Console

    from recunlearn.bench.experiment import DataSpec
    from recunlearn.bench.ifru import IFRUBenchConfig, markdown_table, run_ifru_benchmark

    console = Console()
    out = results_path(ctx, out, "ifru", "quick" if quick else None)
    overrides: dict = {"output": str(out)}
    for key, value in (
        ("models", models),
        ("fractions", fractions),
        ("seeds", seeds),
        ("methods", methods),
    ):
        if value:
            overrides[key] = value
    if quick:
        refuse(ctx, ("dataset",), "--quick runs on its own small synthetic log; drop one of them")
        config = IFRUBenchConfig.quick(**overrides)
    else:
        config = IFRUBenchConfig(data=DataSpec(dataset=dataset), **overrides)
    results = run_ifru_benchmark(config, log=lambda m: console.print(f"[dim]{m}[/dim]"))
    typer.echo(markdown_table(results))
    console.print(f"results: {out}")


@bench_app.command("ifru-scaling")
def ifru_scaling(
    sizes: list[int] | None = typer.Option(
        None, "--size", help="Synthetic interactions (repeat); default 100k, 1M, 5M."
    ),
    removal: str = typer.Option(
        "rows",
        help="rows: random training rows, labels flipped (IFRU's attack); users: every row of random users.",
    ),
    removed: int = typer.Option(1000, help="Rows (or users) removed at every size."),
    model: str = typer.Option("lightgcn", help="mf or lightgcn."),
    max_epochs: int | None = typer.Option(
        None, min=1, help="Cap on training epochs (original and retraining alike)."
    ),
    out: Path = typer.Option(
        Path("benchmarks/results/ifru/scaling.json"), help="Results JSON (markdown beside it)."
    ),
) -> None:
    """IFRU's and retraining's time and peak memory (GPU allocated on CUDA, resident-set rise on CPU) as the synthetic dataset grows."""
    from rich.console import Console

    from recunlearn.bench.ifru import ScalingConfig, run_ifru_scaling, scaling_table

    console = Console()
    config = ScalingConfig(
        removal=removal,
        removed=removed,
        model={"kind": model},
        output=str(writable(out)),
        train={"max_epochs": max_epochs} if max_epochs is not None else {},
        **({"sizes": sizes} if sizes else {}),
    )
    results = run_ifru_scaling(config, log=lambda m: console.print(f"[dim]{m}[/dim]"))
    typer.echo(scaling_table(results))
    console.print(f"results: {out}")
