"""`recunlearn bench quarantine`: quarantine against forget for the partition methods."""

from __future__ import annotations

from pathlib import Path

import typer

from recunlearn.cli import _options as opt
from recunlearn.cli._app import bench_app


@bench_app.command("quarantine")
def quarantine(
    ctx: typer.Context,
    data: str = opt.data_option(),
    shards: int = typer.Option(
        10, "--shards", "-k", min=2, metavar="K", help="K of SISA, RecEraser, GraphEraser."
    ),
    methods: list[str] | None = opt.methods_option("sisa, receraser, grapheraser"),
    apa: bool = typer.Option(
        True, "--apa/--no-apa", help="Also APA at K=4 on `bench apa`'s demo prompts."
    ),
    seeds: list[int] | None = opt.seeds_option(
        "Seed of the deleted user and interaction and of the shards' training (repeat): one run "
        "and one results file per seed; default: deletion seed 0, training's default seed."
    ),
    max_epochs: int | None = opt.max_epochs_option(
        "Cap on the shards' training epochs (APA keeps its demo setting); default: the protocol's."
    ),
    quick: bool = opt.quick_option(
        "Seconds-long smoke run on a small synthetic log and a tiny language model, instead of --data."
    ),
    out: Path = opt.out_option("quarantine"),
) -> None:
    """Time from quarantine call to return against forget, and utility while quarantined and after repair."""
    from rich.console import Console

    from recunlearn.bench.experiment import DataSpec
    from recunlearn.bench.quarantine import (
        QuarantineBenchConfig,
        markdown_table,
        run_quarantine_benchmark,
    )

    if quick:
        opt.refuse(ctx, ("data", "shards"), "--quick runs on its own small synthetic log; drop one")
    configuration = "quick" if quick else f"{opt.data_name(data)}-k{shards}"
    console = Console()
    for seed, path in opt.seed_files(out, configuration, seeds):
        overrides: dict = {"output": str(path), **opt.given_lists(methods=methods)}
        if not apa:
            overrides["apa"] = None
        if quick:
            config = QuarantineBenchConfig.quick(**overrides)
        else:
            config = QuarantineBenchConfig(
                data=DataSpec(dataset=data), n_shards=shards, **overrides
            )
        config = opt.with_training(config, max_epochs, seed)
        if seed is not None:
            config = config.with_values(deletion_seed=seed)
        opt.run_and_show(run_quarantine_benchmark, config, markdown_table, console)
