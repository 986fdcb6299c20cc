"""`recunlearn bench exact`: retraining, SISA, RecEraser and GraphEraser on one dataset."""

from __future__ import annotations

from pathlib import Path

import typer

from recunlearn.cli._app import bench_app
from recunlearn.cli._options import given, refuse, results_path


@bench_app.command("exact")
def exact(
    ctx: typer.Context,
    dataset: str = typer.Option(
        "ml-100k-shared", help="Dataset name or path (default: ML-100K from ../shared/data)."
    ),
    shards: list[int] | None = typer.Option(
        None, "--shards", "-k", help="Numbers of shards K (repeat); default 5, 10, 20."
    ),
    methods: list[str] | None = typer.Option(
        None,
        "--method",
        "-m",
        help="Methods (repeat); default retrain, sisa, receraser, grapheraser.",
    ),
    model: str = typer.Option("mf", help="mf or lightgcn."),
    batch_users: int = typer.Option(10, help="Users in the user-deletion batch."),
    batch_interactions: int = typer.Option(100, help="Interactions in the random-deletion batch."),
    quick: bool = typer.Option(
        False,
        help="Seconds-long smoke run on a small synthetic log, instead of --dataset "
        "(3 users, 10 interactions deleted unless given).",
    ),
    out: Path = typer.Option(
        Path("benchmarks/results/exact/ml100k.json"),
        help="Results JSON (markdown beside it); --quick without --out: quick.json in that folder.",
    ),
) -> None:
    """Exact unlearning by partition: utility, time per request and per batch, speed-up over retraining."""
    from rich.console import Console

    from recunlearn.bench.exact import (
        DataSpec,
        ExactBenchConfig,
        markdown_table,
        run_exact_benchmark,
    )

    console = Console()
    out = results_path(ctx, out, "exact", "quick" if quick else None)
    overrides = {"output": str(out), "model": {"kind": model}}
    if shards:
        overrides["n_shards"] = shards
    if methods:
        overrides["methods"] = methods
    if quick:
        refuse(ctx, ("dataset",), "--quick runs on its own small synthetic log; drop one of them")
        for name, value in (
            ("batch_users", batch_users),
            ("batch_interactions", batch_interactions),
        ):
            if given(ctx, name):
                overrides[name] = value
        config = ExactBenchConfig.quick(**overrides)
    else:
        config = ExactBenchConfig(
            data=DataSpec(dataset=dataset),
            batch_users=batch_users,
            batch_interactions=batch_interactions,
            **overrides,
        )
    results = run_exact_benchmark(config, log=lambda m: console.print(f"[dim]{m}[/dim]"))
    typer.echo(markdown_table(results))
    console.print(f"results: {out}")
