"""`recunlearn bench implicit`: every method on BPR models, judged by top-K ranking."""

from __future__ import annotations

from pathlib import Path

import typer

from recunlearn.cli._app import bench_app
from recunlearn.cli._options import refuse, writable


@bench_app.command("implicit")
def implicit(
    ctx: typer.Context,
    dataset: str = typer.Option(
        "ml-100k",
        help="Dataset name or path (default: MovieLens-100K embedded in the recbole wheel).",
    ),
    models: list[str] | None = typer.Option(
        None, "--model", help="mf / lightgcn (repeat); default both."
    ),
    deletions: list[str] | None = typer.Option(
        None,
        "--deletion",
        help="random / users / fake_positives / fake_users (repeat); default the first three.",
    ),
    users: int = typer.Option(10, min=1, help="Users a 'users' deletion removes."),
    fraction: float = typer.Option(
        0.01, help="Share of the training positives a 'random' deletion removes."
    ),
    seeds: list[int] | None = typer.Option(None, "--seed", help="Seeds (repeat); default 0."),
    methods: list[str] | None = typer.Option(
        None,
        "--method",
        "-m",
        help="Methods (repeat); default retrain, finetune, "
        "neggrad, if, scif, ifru; add sisa, receraser, grapheraser to compare them.",
    ),
    shards: int | None = typer.Option(
        None, min=2, help="Shards of sisa, receraser and grapheraser (default 10)."
    ),
    quick: bool = typer.Option(
        False, help="Seconds-long smoke run on a small synthetic log, instead of --dataset."
    ),
    out: Path = typer.Option(
        Path("runs/bench-implicit/results.json"), help="Results JSON (markdown beside it)."
    ),
) -> None:
    """Unlearning on implicit feedback: Recall/NDCG/MRR/coverage@20, distance to retraining, time and speed-up."""
    from rich.console import Console

    from recunlearn.bench.experiment import DataSpec
    from recunlearn.bench.implicit import (
        ImplicitBenchConfig,
        markdown_table,
        run_implicit_benchmark,
    )

    console = Console()
    overrides: dict = {"output": str(writable(out)), "users": users, "fraction": fraction}
    for key, value in (
        ("models", models),
        ("deletions", deletions),
        ("seeds", seeds),
        ("methods", methods),
    ):
        if value:
            overrides[key] = value
    if shards is not None:
        overrides["method_options"] = {
            name: {"n_shards": shards} for name in ("sisa", "receraser", "grapheraser")
        }
    if quick:
        refuse(ctx, ("dataset",), "--quick runs on its own small synthetic log; drop one of them")
        for key in ("users", "fraction"):
            if ctx.get_parameter_source(key).name in ("DEFAULT", "DEFAULT_MAP"):
                overrides.pop(key)
        config = ImplicitBenchConfig.quick(**overrides)
    else:
        config = ImplicitBenchConfig(
            data=DataSpec(dataset=dataset, protocol="implicit"), **overrides
        )
    results = run_implicit_benchmark(config, log=lambda m: console.print(f"[dim]{m}[/dim]"))
    typer.echo(markdown_table(results))
    console.print(f"results: {out}")
