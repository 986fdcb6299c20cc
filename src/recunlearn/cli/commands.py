"""The main commands: demo, run, methods, data info / data list."""

from __future__ import annotations

import importlib
import json
import os
import re
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from recunlearn.cli._app import app, data_app
from recunlearn.cli._common_options import output_folder
from recunlearn.errors import ConfigError, DataError

console = Console(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 160)
"""Wide enough for the comparison table when output goes to a file or CI log (COLUMNS wins)."""


def _print_table(title: str, header: list[str], cells: list[list[str]]) -> None:
    """Text columns left-aligned, columns of figures right-aligned; no vertical rules, and the first
    column (the row's name) kept whole, so that a table of figures fits 80 columns."""
    table = Table(title=title, box=None, pad_edge=False, header_style="bold")
    for i, name in enumerate(header):
        figures = all(_is_figure(row[i]) for row in cells)
        table.add_column(
            name,
            justify="right" if figures and i else "left",
            no_wrap=i == 0,
            overflow="fold",  # a long header folds; figures keep their width
            min_width=max((len(row[i]) for row in cells), default=1) if figures else None,
        )
    for row in cells:
        table.add_row(*row)
    console.print(table)


def _is_figure(cell: str) -> bool:
    return re.fullmatch(r"[-+]?[\d,.]+(e[-+]?\d+)?\s*[x%s]?|-|nan|inf", cell.strip()) is not None


def _print_experiment(results: dict) -> None:
    from recunlearn.bench.experiment import table_rows

    header, cells = table_rows(results)
    deletion = results["deletion"]
    _print_table(
        f"{results['config']['data']['dataset']}, {results['config']['model'].get('kind', 'mf')}: "
        f"forgetting {deletion['rows']:,} rows ({deletion['kind']})",
        header,
        cells,
    )
    console.print(
        "|Δ| = mean absolute score difference to the retrained model (0 = exact); "
        "speed-up = retraining's forget time / the method's; most-popular = one list for everyone, "
        "the floor a recommender must clear."
    )


@app.command()
def demo(
    data: str = typer.Option(
        "ml-100k",
        "--data",
        metavar="NAME|PATH",
        help="Dataset: a registered name (see `recunlearn data list`) or a file or folder in a "
        "known format; default: the MovieLens-100K embedded in the recbole wheel.",
    ),
    model: str = typer.Option("mf", help="mf or lightgcn."),
    methods: list[str] | None = typer.Option(
        None,
        "--method",
        "-m",
        help="Methods to compare on interactions (repeat); default: all. The language-model part "
        "runs its own preset (--no-llm skips it).",
    ),
    protocol: str = typer.Option(
        "implicit",
        help="implicit: positives ranked over all items, BPR models, random fake "
        "positives injected and then forgotten; labels: IFRU's protocol, flipped labels forgotten.",
    ),
    fraction: float | None = typer.Option(
        None,
        help="Share of the training rows injected (implicit, default 0.1) or "
        "whose labels are flipped (labels, default 0.02), then forgotten.",
    ),
    threshold: str | None = typer.Option(
        None,
        help="Liked = rating > threshold (default 3); 'none' counts every row "
        "as a positive (a user,item table without ratings).",
    ),
    executor: str = typer.Option(
        "process",
        help="Where shard-based methods train their shards: process (a pool "
        "using every core), inprocess, or ray.",
    ),
    llm: bool = typer.Option(
        True, help="Also run APA and its baselines on the embedded language model (small preset)."
    ),
    out: Path = typer.Option(
        Path("runs/demo"), metavar="FOLDER", help="Folder for the results JSON and markdown."
    ),
) -> None:
    """The main job: train, forget a deletion set with each method, compare utility, completeness and time."""
    from recunlearn.bench.experiment import DataSpec, DeletionSpec, ExperimentConfig, run_experiment

    if protocol not in ("implicit", "labels"):
        raise ConfigError(f"--protocol must be implicit or labels, got {protocol!r}")
    implicit = protocol == "implicit"
    spec = DataSpec(
        dataset=data,
        protocol=protocol,
        **({"threshold": threshold} if threshold is not None else {}),
    )
    deletion = DeletionSpec(
        kind="fake_positives" if implicit else "label_flip",
        fraction=fraction if fraction is not None else 0.1 if implicit else 0.02,
    )
    config = ExperimentConfig(
        data=spec,
        deletion=deletion,
        model={"kind": model},
        methods=methods or [],
        executor=executor,
        output=str(out / "collaborative.json"),
    )
    with output_folder(out):
        results = run_experiment(config, log=lambda m: console.print(f"[dim]{m}[/dim]"))
        _print_experiment(results)
        console.print(f"results: {out / 'collaborative.json'}")
        if llm:
            _llm_demo(out)


def _llm_demo(out: Path) -> None:
    try:
        apa = importlib.import_module("recunlearn.bench.apa")
    except ModuleNotFoundError as exc:
        if exc.name not in ("recunlearn.bench.apa",):
            raise
        console.print(
            "[yellow]APA is not part of this build; skipping the language-model part.[/yellow]"
        )
        return
    results = apa.run_demo(out, console=console)
    console.print(
        f"note: a smoke run, not a result: {results['samples']['train']} training prompts and one "
        "epoch on the CPU leave the language models near chance (AUC 0.5), below the two-feature "
        "logistic regression; it shows that each method trains, forgets and scores. The figures of "
        "the full protocol are in docs/apa.md (recunlearn bench apa).",
        markup=False,
        highlight=False,
    )


@app.command()
def run(
    config: Path = typer.Argument(
        ..., help="TOML file with the data and deletion tables, model, train, methods ..."
    ),
) -> None:
    """Run an experiment described by a TOML config (see docs/experiments.md)."""
    from recunlearn.bench.experiment import ExperimentConfig, run_experiment

    experiment = ExperimentConfig.from_toml(config)
    if not experiment.output:
        _print_experiment(
            run_experiment(experiment, log=lambda m: console.print(f"[dim]{m}[/dim]"))
        )
        return
    output = Path(experiment.output)
    if output.is_dir():
        raise ConfigError(f"{config}: output {output}: a folder, not a results file")
    with output_folder(output.parent, option=f"{config}: output"):
        results = run_experiment(experiment, log=lambda m: console.print(f"[dim]{m}[/dim]"))
    _print_experiment(results)
    console.print(f"results: {output}")


_JSON_OPTION = typer.Option(False, "--json", help="Print JSON instead of a table.")


@app.command("methods")
def list_methods(as_json: bool = _JSON_OPTION) -> None:
    """List the registered unlearning methods."""
    from recunlearn.unlearn import available_methods

    listed = [
        {
            "name": name,
            "kind": "exact" if cls.exact else "approximate",
            "data": cls.data_kind,
            "what it does": ((cls.__doc__ or "").strip().splitlines() or [""])[0],
        }
        for name, cls in available_methods().items()
    ]
    _print_listing("methods", listed, as_json)


@data_app.command("list")
def data_list(as_json: bool = _JSON_OPTION) -> None:
    """Named datasets (any path in a known format works too)."""
    from recunlearn.data import available_datasets

    listed = [{"name": k, "what": v} for k, v in available_datasets().items()]
    _print_listing("datasets", listed, as_json)


def _print_listing(title: str, listed: list[dict[str, str]], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(listed, indent=1))
    else:
        _print_table(title, list(listed[0]), [list(entry.values()) for entry in listed])


@data_app.command("fetch")
def data_fetch(
    name: str = typer.Argument(..., help="A downloadable dataset (e.g. ml-100k)."),
    base_url: str | None = typer.Option(
        None, help="A mirror to download from instead of the original site."
    ),
) -> None:
    """Download a public dataset once into the cache, checking each file's pinned sha256."""
    from recunlearn.data.download import fetch

    console.print(str(fetch(name, base_url=base_url)))


def _parse_options(options: list[str]) -> dict:
    """``key=value`` pairs; values parsed as JSON when they can be (numbers, booleans), else kept as text."""
    parsed = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or not key:
            raise ConfigError(f"--option {option!r}: expected key=value")
        try:
            parsed[key] = json.loads(value)
        except json.JSONDecodeError:
            parsed[key] = value
    return parsed


@data_app.command("info")
def data_info(
    source: str = typer.Argument(..., help="A dataset name or a path."),
    threshold: float | None = typer.Option(
        None, help="Binarise labels as rating > threshold first."
    ),
    option: list[str] | None = typer.Option(
        None,
        "--option",
        "-o",
        help="Loader option key=value (repeat), e.g. n_interactions=1000000.",
    ),
    as_json: bool = _JSON_OPTION,
) -> None:
    """Rows, users, items, label balance, density and text availability of a dataset."""
    import numpy as np

    from recunlearn.data import binarize, load_dataset

    data = load_dataset(source, **_parse_options(option or []))
    if not len(data):
        raise DataError(f"{source}: the data has no rows")
    if threshold is not None:
        data = binarize(data, threshold)
    per_user = np.bincount(data.user, minlength=data.n_users)
    info = {
        "name": data.name,
        "rows": len(data),
        "users": data.n_users,
        "items": data.n_items,
        "density": round(len(data) / max(data.n_users * data.n_items, 1), 6),
        "positive_rate": round(float(data.label.mean()), 4),
        "ratings": None
        if np.isnan(data.rating).all()
        else {
            str(k): int(v)
            for k, v in zip(*np.unique(data.rating[~np.isnan(data.rating)], return_counts=True))
        },
        "interactions_per_user": {
            "min": int(per_user.min()),
            "median": float(np.median(per_user)),
            "max": int(per_user.max()),
        },
        "titles": data.item_title is not None,
        "authors": data.item_author is not None,
        "content_hash": data.content_hash(),
    }
    if as_json:
        console.print_json(json.dumps(info))
    else:
        _print_table(f"{source}", ["field", "value"], [[k, str(v)] for k, v in info.items()])
