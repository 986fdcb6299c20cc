"""`recunlearn bench exact`: retraining, SISA, RecEraser and GraphEraser on one dataset."""

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
    seed_runs,
    seeds_option,
)


@bench_app.command("exact")
def exact(
    ctx: typer.Context,
    data: str = data_option(),
    shards: list[int] | None = typer.Option(
        None,
        "--shards",
        "-k",
        metavar="K",
        help="Numbers of shards K (repeat); default 5, 10, 20.",
    ),
    methods: list[str] | None = methods_option(
        "retrain, sisa, receraser, grapheraser.",
    ),
    model: str = typer.Option("mf", metavar="KIND", help="mf or lightgcn"),
    batch_users: int = typer.Option(10, metavar="N", help="Users in the user-deletion batch."),
    batch_interactions: int = typer.Option(
        100, metavar="N", help="Interactions in the random-deletion batch."
    ),
    seeds: list[int] | None = seeds_option(
        "Seed of the deleted users and interactions and of training (repeat): one run and one "
        "results file per seed; default: deletion seed 0, training's default seed."
    ),
    max_epochs: int | None = max_epochs_option(),
    quick: bool = quick_option(
        "Seconds-long smoke run on a small synthetic log, instead of --data "
        "(3 users, 10 interactions deleted unless given)."
    ),
    out: Path = out_option("exact"),
) -> None:
    """Exact unlearning by partition: utility, time per request and per batch, speed-up over retraining."""
    from rich.console import Console

    from recunlearn.bench.exact import (
        DataSpec,
        ExactBenchConfig,
        markdown_table,
        run_exact_benchmark,
    )

    if quick:
        refuse(ctx, ("data",), "--quick runs on its own small synthetic log; drop one of them")
    configuration = "quick" if quick else data_name(data)
    runs = [(seed, results_file(out, configuration, seed)) for seed in seed_runs(seeds)]
    console = Console()
    for seed, path in runs:
        overrides: dict = {"output": str(path), "model": {"kind": model}}
        if shards:
            overrides["n_shards"] = shards
        if methods:
            overrides["methods"] = methods
        for name, value in (
            ("batch_users", batch_users),
            ("batch_interactions", batch_interactions),
        ):
            if not quick or given(ctx, name):
                overrides[name] = value
        if quick:
            config = ExactBenchConfig.quick(**overrides)
        else:
            config = ExactBenchConfig(data=DataSpec(dataset=data), **overrides)
        train = dict(config.train)
        if max_epochs is not None:
            train["max_epochs"] = max_epochs
        if seed is not None:
            train["seed"] = seed
        config = config.with_values(
            **{"train": train, "deletion_seed": config.deletion_seed if seed is None else seed}
        )
        results = run_exact_benchmark(config, log=lambda m: console.print(f"[dim]{m}[/dim]"))
        print_tables(markdown_table(results), console)
        console.print(f"results: {path}", markup=False, highlight=False)
