"""`recunlearn bench ifru`: IFRU and the approximate baselines on the label-flip protocol."""

from __future__ import annotations

from pathlib import Path

import typer

from recunlearn.cli import _options as opt
from recunlearn.cli._app import bench_app


@bench_app.command("ifru")
def ifru(
    ctx: typer.Context,
    data: str = opt.data_option(),
    models: list[str] | None = opt.models_option(),
    fractions: list[float] | None = typer.Option(
        None, "--fraction", metavar="F", help="Flipped fraction (repeat); default 0.02."
    ),
    seeds: list[int] | None = opt.seeds_option(
        "Seeds (repeat), all in one results file; default 0."
    ),
    methods: list[str] | None = opt.methods_option(
        "retrain, sisa, if, scif, finetune, neggrad, ifru.",
    ),
    max_epochs: int | None = opt.max_epochs_option(),
    quick: bool = opt.quick_option(
        "Seconds-long smoke run on a small synthetic log, instead of --data"
    ),
    out: Path = opt.out_option("ifru"),
) -> None:
    """Approximate unlearning of label-flipped data: utility, completeness, time and speed-up over retraining."""
    from rich.console import Console

    from recunlearn.bench.experiment import DataSpec
    from recunlearn.bench.ifru import IFRUBenchConfig, markdown_table, run_ifru_benchmark

    path = opt.results_file(out, opt.quick_or_dataset(ctx, quick, data))
    console = Console()
    overrides: dict = {
        "output": str(path),
        **opt.given_lists(models=models, fractions=fractions, seeds=seeds, methods=methods),
    }
    if quick:
        config = IFRUBenchConfig.quick(**overrides)
    else:
        config = IFRUBenchConfig(data=DataSpec(dataset=data), **overrides)
    config = opt.with_training(config, max_epochs)
    opt.run_and_show(run_ifru_benchmark, config, markdown_table, console)


@bench_app.command("ifru-scaling")
def ifru_scaling(
    ctx: typer.Context,
    sizes: list[int] | None = typer.Option(
        None, "--size", metavar="N", help="Synthetic interactions (repeat); default 100k, 1M, 5M."
    ),
    removal: str = typer.Option(
        "rows",
        metavar="rows|users",
        help="rows: random training rows, labels flipped (IFRU's attack); users: every row of "
        "random users.",
    ),
    removed: int = typer.Option(1000, metavar="N", help="Rows (or users) removed at every size."),
    model: str = typer.Option("lightgcn", metavar="KIND", help="mf or lightgcn."),
    max_epochs: int | None = opt.max_epochs_option(
        "Cap on training epochs (original and retraining alike)."
    ),
    seeds: list[int] | None = opt.seeds_option(),
    quick: bool = opt.quick_option(
        "Seconds-long smoke run: two small logs, MF, one epoch; the options given apply on top."
    ),
    out: Path = opt.out_option("ifru-scaling"),
) -> None:
    """IFRU's and retraining's time and peak memory (GPU allocated on CUDA, resident-set rise on CPU) as the synthetic dataset grows."""
    from rich.console import Console

    from recunlearn.bench.ifru import IFRUScalingConfig, run_ifru_scaling, scaling_table

    console = Console()
    configuration = "quick" if quick else f"synthetic-{removal}-{model}"
    for seed, path in opt.seed_files(out, configuration, seeds):
        values: dict = {
            "output": str(path),
            **opt.over_preset(ctx, quick, removal=removal, removed=removed, model={"kind": model}),
            **opt.given_lists(sizes=sizes),
        }
        if seed is not None:
            values["seed"] = seed
        config = IFRUScalingConfig.quick(**values) if quick else IFRUScalingConfig(**values)
        config = opt.with_training(config, max_epochs)
        opt.run_and_show(run_ifru_scaling, config, scaling_table, console)
