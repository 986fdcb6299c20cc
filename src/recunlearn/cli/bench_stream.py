"""`recunlearn bench stream`: a stream of deletion requests served one at a time by every method."""

from __future__ import annotations

from pathlib import Path

import typer

from recunlearn.cli import _options as opt
from recunlearn.cli._app import bench_app


@bench_app.command("stream")
def stream(
    ctx: typer.Context,
    data: str = opt.data_option(),
    methods: list[str] | None = opt.methods_option(
        "ifru, if, neggrad, finetune, sisa, receraser, quarantine"
    ),
    requests: int = typer.Option(
        100, min=1, metavar="N", help="Single-user requests of the users stream."
    ),
    streams: list[str] | None = typer.Option(
        None, "--stream", metavar="KIND", help="Streams (repeat): users, attack; default both."
    ),
    refresh_every: list[int] | None = typer.Option(
        None,
        "--refresh-every",
        metavar="N",
        help="N of the ifru/N refresh policies (repeat); default 1, 2, 5, 10, 25, 50.",
    ),
    checkpoints: list[int] | None = typer.Option(
        None,
        "--checkpoint",
        metavar="N",
        help="Requests after which methods are measured (repeat); default 1, 2, 5, 10, 25, 50, 100.",
    ),
    seeds: list[int] | None = opt.seeds_option(
        "Seed of the deleted users, the attack rows and training (repeat): one run and one "
        "results file per seed; default 0."
    ),
    max_epochs: int | None = opt.max_epochs_option(),
    quick: bool = opt.quick_option(
        "Seconds-long smoke run on a small synthetic log, instead of --data."
    ),
    out: Path = opt.out_option("stream"),
) -> None:
    """Recall@20, distance to retraining, membership advantage and cumulative time along a stream of
    deletions; the cheapest IFRU refresh policy within 0.005 Recall@20 of retraining."""
    from rich.console import Console

    from recunlearn.bench.experiment import DataSpec
    from recunlearn.bench.stream import StreamBenchConfig, markdown_table, run_stream_benchmark

    if quick:
        opt.refuse(ctx, ("data", "requests"), "--quick runs its own small stream; drop one of them")
    console = Console()
    overrides = opt.given_lists(
        methods=methods, streams=streams, refresh_every=refresh_every, checkpoints=checkpoints
    )
    if quick:
        base = StreamBenchConfig.quick(**overrides)
        configuration = "quick"
    else:
        base = StreamBenchConfig(
            data=DataSpec(dataset=data, protocol="implicit"), n_requests=requests, **overrides
        )
        configuration = f"{opt.data_name(data)}-{base.data.protocol}-{base.model['kind']}"
    for seed, path in opt.seed_files(out, configuration, seeds):
        config = opt.with_training(base, max_epochs).with_values(output=str(path))
        if seed is not None:
            config = config.with_values(seed=seed)
        opt.run_and_show(run_stream_benchmark, config, markdown_table, console)
