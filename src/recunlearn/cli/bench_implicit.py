"""`recunlearn bench implicit`: every method on BPR models, judged by top-K ranking."""

from __future__ import annotations

from pathlib import Path

import typer

from recunlearn.cli import _options as opt
from recunlearn.cli._app import bench_app


@bench_app.command("implicit")
def implicit(
    ctx: typer.Context,
    data: str = opt.data_option(),
    models: list[str] | None = opt.models_option(),
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
    seeds: list[int] | None = opt.seeds_option(
        "Seeds (repeat), all in one results file; default 0."
    ),
    methods: list[str] | None = opt.methods_option(
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
    max_epochs: int | None = opt.max_epochs_option(),
    quick: bool = opt.quick_option(
        "Seconds-long smoke run on a small synthetic log, instead of --data"
    ),
    out: Path = opt.out_option("implicit"),
) -> None:
    """Unlearning on implicit feedback: Recall/NDCG/MRR/coverage@20, distance to retraining, time and speed-up."""
    from rich.console import Console

    from recunlearn.bench.experiment import DataSpec
    from recunlearn.bench.implicit import (
        ImplicitBenchConfig,
        markdown_table,
        run_implicit_benchmark,
    )

    path = opt.results_file(out, opt.quick_or_dataset(ctx, quick, data))
    console = Console()
    overrides: dict = {
        "output": str(path),
        **opt.over_preset(ctx, quick, users=users, fraction=fraction),
        **opt.given_lists(models=models, deletions=deletions, seeds=seeds, methods=methods),
    }
    if shards is not None:
        overrides["method_options"] = {
            name: {"n_shards": shards} for name in ("sisa", "receraser", "grapheraser")
        }
    if quick:
        config = ImplicitBenchConfig.quick(**overrides)
    else:
        config = ImplicitBenchConfig(data=DataSpec(dataset=data, protocol="implicit"), **overrides)
    config = opt.with_training(config, max_epochs)
    opt.run_and_show(run_implicit_benchmark, config, markdown_table, console)
