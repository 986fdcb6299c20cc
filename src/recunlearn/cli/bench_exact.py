"""`recunlearn bench exact`: retraining, SISA, RecEraser and GraphEraser on one dataset."""

from __future__ import annotations

from pathlib import Path

import typer

from recunlearn.cli import _options as opt
from recunlearn.cli._app import bench_app


@bench_app.command("exact")
def exact(
    ctx: typer.Context,
    data: str = opt.data_option(),
    shards: list[int] | None = typer.Option(
        None,
        "--shards",
        "-k",
        metavar="K",
        help="Numbers of shards K (repeat); default 5, 10, 20.",
    ),
    methods: list[str] | None = opt.methods_option(
        "retrain, sisa, receraser, grapheraser.",
    ),
    model: str = typer.Option("mf", metavar="KIND", help="mf or lightgcn"),
    batch_users: int = typer.Option(10, metavar="N", help="Users in the user-deletion batch."),
    batch_interactions: int = typer.Option(
        100, metavar="N", help="Interactions in the random-deletion batch."
    ),
    seeds: list[int] | None = opt.seeds_option(
        "Seed of the deleted users and interactions and of training (repeat): one run and one "
        "results file per seed; default: deletion seed 0, training's default seed."
    ),
    max_epochs: int | None = opt.max_epochs_option(),
    quick: bool = opt.quick_option(
        "Seconds-long smoke run on a small synthetic log, instead of --data "
        "(3 users, 10 interactions deleted unless given)."
    ),
    out: Path = opt.out_option("exact"),
) -> None:
    """Exact unlearning by partition: utility, time per request and per batch, speed-up over retraining."""
    from rich.console import Console

    from recunlearn.bench.exact import (
        DataSpec,
        ExactBenchConfig,
        markdown_table,
        run_exact_benchmark,
    )

    configuration = opt.quick_or_dataset(ctx, quick, data)
    console = Console()
    for seed, path in opt.seed_files(out, configuration, seeds):
        overrides: dict = {
            "output": str(path),
            "model": {"kind": model},
            **opt.given_lists(n_shards=shards, methods=methods),
            **opt.over_preset(
                ctx, quick, batch_users=batch_users, batch_interactions=batch_interactions
            ),
        }
        if quick:
            config = ExactBenchConfig.quick(**overrides)
        else:
            config = ExactBenchConfig(data=DataSpec(dataset=data), **overrides)
        config = opt.with_training(config, max_epochs, seed)
        if seed is not None:
            config = config.with_values(deletion_seed=seed)
        opt.run_and_show(run_exact_benchmark, config, markdown_table, console)
