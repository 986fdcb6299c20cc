"""`recunlearn bench stream`: a stream of deletion requests served one at a time by every method."""

from __future__ import annotations

from pathlib import Path

import typer

from recunlearn.cli._app import bench_app
from recunlearn.cli._options import refuse, results_path


@bench_app.command("stream")
def stream(
    ctx: typer.Context,
    dataset: str = typer.Option(
        "ml-100k-shared", help="Dataset name or path (default: ML-100K from ../shared/data)."
    ),
    methods: list[str] | None = typer.Option(
        None,
        "--method",
        "-m",
        help="Methods (repeat); default ifru, if, neggrad, finetune, sisa, receraser, quarantine.",
    ),
    requests: int = typer.Option(100, help="Single-user requests of the users stream."),
    streams: list[str] | None = typer.Option(
        None, "--stream", help="Streams (repeat): users, attack; default both."
    ),
    refresh_every: list[int] | None = typer.Option(
        None, "--refresh-every", help="N of the ifru/N refresh policies (repeat)."
    ),
    checkpoints: list[int] | None = typer.Option(
        None, "--checkpoint", help="Requests after which methods are measured (repeat)."
    ),
    quick: bool = typer.Option(False, help="Seconds-long smoke run on a small synthetic log."),
    out: Path = typer.Option(
        Path("benchmarks/results/stream/ml100k-implicit-mf-cpu.json"),
        help="Results JSON (markdown and plots beside it); --quick without --out: quick.json there.",
    ),
) -> None:
    """Recall@20, distance to retraining, membership advantage and cumulative time along a stream of
    deletions; the cheapest IFRU refresh policy within 0.005 Recall@20 of retraining."""
    from rich.console import Console

    from recunlearn.bench.experiment import DataSpec
    from recunlearn.bench.stream import StreamBenchConfig, markdown_table, run_stream_benchmark

    console = Console()
    out = results_path(ctx, out, "stream", "quick" if quick else None)
    overrides: dict = {"output": str(out)}
    for name, value in (
        ("methods", methods),
        ("streams", streams),
        ("refresh_every", refresh_every),
        ("checkpoints", checkpoints),
    ):
        if value:
            overrides[name] = value
    if quick:
        refuse(ctx, ("dataset", "requests"), "--quick runs its own small stream; drop one of them")
        config = StreamBenchConfig.quick(**overrides)
    else:
        data = DataSpec(dataset=dataset, protocol="implicit")
        config = StreamBenchConfig(data=data, n_requests=requests, **overrides)
    results = run_stream_benchmark(config, log=lambda m: console.print(f"[dim]{m}[/dim]"))
    typer.echo(markdown_table(results))
    console.print(f"results: {out}")
