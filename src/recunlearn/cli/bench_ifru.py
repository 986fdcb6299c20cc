"""`recunlearn bench ifru`: IFRU and the approximate baselines on the label-flip protocol."""

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


@bench_app.command("ifru")
def ifru(
    ctx: typer.Context,
    data: str = data_option(),
    models: list[str] | None = typer.Option(
        None, "--model", metavar="KIND", help="mf / lightgcn (repeat); default both."
    ),
    fractions: list[float] | None = typer.Option(
        None, "--fraction", metavar="F", help="Flipped fraction (repeat); default 0.02."
    ),
    seeds: list[int] | None = typer.Option(
        None, "--seed", metavar="N", help="Seeds (repeat), all in one results file; default 0."
    ),
    methods: list[str] | None = methods_option(
        "retrain, sisa, if, scif, finetune, neggrad, ifru.",
    ),
    max_epochs: int | None = max_epochs_option(),
    quick: bool = quick_option(
        "Seconds-long smoke run on a small synthetic log, instead of --data"
    ),
    out: Path = out_option("ifru"),
) -> None:
    """Approximate unlearning of label-flipped data: utility, completeness, time and speed-up over retraining."""
    from rich.console import Console

    from recunlearn.bench.experiment import DataSpec
    from recunlearn.bench.ifru import IFRUBenchConfig, markdown_table, run_ifru_benchmark

    if quick:
        refuse(ctx, ("data",), "--quick runs on its own small synthetic log; drop one of them")
    path = results_file(out, "quick" if quick else data_name(data))
    console = Console()
    overrides: dict = {"output": str(path)}
    for key, value in (
        ("models", models),
        ("fractions", fractions),
        ("seeds", seeds),
        ("methods", methods),
    ):
        if value:
            overrides[key] = value
    if quick:
        config = IFRUBenchConfig.quick(**overrides)
    else:
        config = IFRUBenchConfig(data=DataSpec(dataset=data), **overrides)
    if max_epochs is not None:
        config = config.with_values(**{"train": {**config.train, "max_epochs": max_epochs}})
    results = run_ifru_benchmark(config, log=lambda m: console.print(f"[dim]{m}[/dim]"))
    print_tables(markdown_table(results), console)
    console.print(f"results: {path}", markup=False, highlight=False)


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
    max_epochs: int | None = max_epochs_option(
        "Cap on training epochs (original and retraining alike)."
    ),
    seeds: list[int] | None = seeds_option(),
    quick: bool = quick_option(
        "Seconds-long smoke run: two small logs, MF, one epoch; the options given apply on top."
    ),
    out: Path = out_option("ifru-scaling"),
) -> None:
    """IFRU's and retraining's time and peak memory (GPU allocated on CUDA, resident-set rise on CPU) as the synthetic dataset grows."""
    from rich.console import Console

    from recunlearn.bench.ifru import IFRUScalingConfig, run_ifru_scaling, scaling_table

    console = Console()
    configuration = "quick" if quick else f"synthetic-{removal}-{model}"
    runs = [(seed, results_file(out, configuration, seed)) for seed in seed_runs(seeds)]
    for seed, path in runs:
        values: dict = {"output": str(path)}
        for name, value in (("removal", removal), ("removed", removed), ("model", {"kind": model})):
            if not quick or given(ctx, name):  # the quick preset keeps its own unless asked
                values[name] = value
        if sizes:
            values["sizes"] = sizes
        if seed is not None:
            values["seed"] = seed
        config = IFRUScalingConfig.quick(**values) if quick else IFRUScalingConfig(**values)
        if max_epochs is not None:
            config = config.with_values(**{"train": {**config.train, "max_epochs": max_epochs}})
        results = run_ifru_scaling(config, log=lambda m: console.print(f"[dim]{m}[/dim]"))
        print_tables(scaling_table(results), console)
        console.print(f"results: {path}", markup=False, highlight=False)
