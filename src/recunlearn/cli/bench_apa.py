"""`recunlearn bench apa`: APA and the exact baselines on the language-model recommender."""

from __future__ import annotations

from pathlib import Path

import typer

from recunlearn.cli._app import bench_app
from recunlearn.cli._options import given, refuse, results_path
from recunlearn.errors import ConfigError


@bench_app.command("apa")
def apa(
    ctx: typer.Context,
    data: str = typer.Option(
        "ml-100k-shared",
        help="Interaction dataset (prompts are built from it), a TALLRec JSON "
        "file, or a folder with train.json/valid.json/test.json.",
    ),
    backbone: str = typer.Option(
        "minilm", help="minilm (embedded), smollm2 (embedded GGUF), or a model folder / hub name."
    ),
    methods: list[str] | None = typer.Option(
        None, "--method", "-m", help="Methods (repeat); default all five."
    ),
    shards: int = typer.Option(4, "--shards", "-k", help="Shards (adapters) K."),
    n_train: int = typer.Option(1024, help="Training samples."),
    n_valid: int = typer.Option(500, help="Validation samples."),
    n_test: int = typer.Option(1000, help="Test samples."),
    max_epochs: int = typer.Option(8, help="Epochs at most per adapter."),
    patience: int = typer.Option(
        2, help="Early-stopping patience (validations without a better validation AUC)."
    ),
    eval_every: int = typer.Option(1, help="Validate every this many epochs (TALLRec: 5)."),
    lr: float = typer.Option(1e-3, help="Adapter learning rate."),
    head: str | None = typer.Option(
        None,
        help="Encoder head: per_adapter (trained with each adapter) or shared "
        "(one frozen head for every adapter and method); default: BackboneConfig's.",
    ),
    forget: bool = typer.Option(
        True, help="Measure forgetting one sample (--no-forget: AUCs and latency only)."
    ),
    demo: bool = typer.Option(
        False,
        help="The demo preset (about a minute on 2 CPU cores); the data, size and "
        "training options given apply on top.",
    ),
    quick: bool = typer.Option(
        False,
        help="Seconds-long smoke run with a tiny random model; the data, size and "
        "training options given apply on top.",
    ),
    seed: int = typer.Option(
        0,
        help="Seed of the sample draws, the forgotten sample and adapter training; "
        "rerun with other seeds to see how much the AUCs move.",
    ),
    out: Path = typer.Option(
        Path("benchmarks/results/apa/ml100k-minilm.json"),
        help="Results JSON (markdown beside "
        "it); --quick / --demo without --out: quick.json / demo.json in that folder.",
    ),
) -> None:
    """AUC, unlearning time for a one-sample request, and inference latency of APA and its baselines."""
    from rich.console import Console

    from recunlearn.bench.apa import ApaBenchConfig, markdown_table, run_apa_benchmark

    if quick and demo:
        raise ConfigError("--quick and --demo are two presets; choose one")
    preset = "quick" if quick else "demo" if demo else None
    out = results_path(ctx, out, "apa", preset)
    console = Console()
    overrides = {"output": str(out), "n_shards": shards, "sample_seed": seed, "forget": forget}
    if methods:
        overrides["methods"] = methods
    train = {"lr": lr, "max_epochs": max_epochs, "patience": patience, "eval_every": eval_every}
    if preset is None:
        config = ApaBenchConfig(
            data=data,
            backbone={"name": backbone},
            n_train=n_train,
            n_valid=n_valid,
            n_test=n_test,
            train={**train, "batch_size": 16},
            **overrides,
        )
    else:
        if quick:
            refuse(ctx, ("backbone",), "--quick runs a tiny random model; drop one of them")
        make = ApaBenchConfig.quick if quick else ApaBenchConfig.demo
        defaults = make()
        for name, value in (
            ("data", data),
            ("n_train", n_train),
            ("n_valid", n_valid),
            ("n_test", n_test),
        ):
            if given(ctx, name):
                overrides[name] = value
        if given(ctx, "backbone"):
            overrides["backbone"] = {**defaults.backbone, "name": backbone}
        overrides["train"] = {**defaults.train, **{k: v for k, v in train.items() if given(ctx, k)}}
        config = make(**overrides)
    if head is not None:
        config = config.model_copy(update={"backbone": {**config.backbone, "head": head}})
    config = config.model_copy(update={"train": {**config.train, "seed": seed}})
    results = run_apa_benchmark(config, log=lambda m: console.print(f"[dim]{m}[/dim]"))
    typer.echo(markdown_table(results))
    console.print(f"results: {out}")
