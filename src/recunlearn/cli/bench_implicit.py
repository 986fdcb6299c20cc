"""`recunlearn bench implicit`: every method on BPR models, judged by top-K ranking."""

from __future__ import annotations

from pathlib import Path

import typer

from recunlearn.cli._app import bench_app
from recunlearn.cli._options import (
    data_name,
    data_option,
    given,
    max_epochs_option,
    methods_option,
    out_option,
    print_tables,
    quick_option,
    refuse,
    results_file,
)


@bench_app.command("implicit")
def implicit(
    ctx: typer.Context,
    data: str = data_option(),
    models: list[str] | None = typer.Option(
        None, "--model", metavar="KIND", help="mf / lightgcn (repeat); default both."
    ),
    deletions: list[str] | None = typer.Option(
        None,
        "--deletion",
        metavar="KIND",
        help="random / users / fake_positives / fake_users (repeat); default the first three.",
    ),
    users: int = typer.Option(10, min=1, metavar="N", help="Users a 'users' deletion removes."),
    fraction: float = typer.Option(
        0.01, metavar="F", help="Share of the training positives a 'random' deletion removes."
    ),
    seeds: list[int] | None = typer.Option(
        None, "--seed", metavar="N", help="Seeds (repeat), all in one results file; default 0."
    ),
    methods: list[str] | None = methods_option(
        "retrain, finetune, "
        "neggrad, if, scif, ifru; add sisa, receraser, grapheraser to compare them.",
    ),
    shards: int | None = typer.Option(
        None,
        "--shards",
        "-k",
        min=2,
        metavar="K",
        help="Shards of sisa, receraser and grapheraser (default 10).",
    ),
    max_epochs: int | None = max_epochs_option(),
    quick: bool = quick_option(
        "Seconds-long smoke run on a small synthetic log, instead of --data"
    ),
    out: Path = out_option("implicit"),
) -> None:
    """Unlearning on implicit feedback: Recall/NDCG/MRR/coverage@20, distance to retraining, time and speed-up."""
    from rich.console import Console

    from recunlearn.bench.experiment import DataSpec
    from recunlearn.bench.implicit import (
        ImplicitBenchConfig,
        markdown_table,
        run_implicit_benchmark,
    )

    if quick:
        refuse(ctx, ("data",), "--quick runs on its own small synthetic log; drop one of them")
    path = results_file(out, "quick" if quick else data_name(data))
    console = Console()
    overrides: dict = {"output": str(path), "users": users, "fraction": fraction}
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
        for key in ("users", "fraction"):
            if not given(ctx, key):
                overrides.pop(key)
        config = ImplicitBenchConfig.quick(**overrides)
    else:
        config = ImplicitBenchConfig(data=DataSpec(dataset=data, protocol="implicit"), **overrides)
    if max_epochs is not None:
        config = config.with_values(**{"train": {**config.train, "max_epochs": max_epochs}})
    results = run_implicit_benchmark(config, log=lambda m: console.print(f"[dim]{m}[/dim]"))
    print_tables(markdown_table(results), console)
    console.print(f"results: {path}", markup=False, highlight=False)
