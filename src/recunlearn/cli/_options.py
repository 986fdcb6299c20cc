"""What the bench commands share: their common options, which options were typed, where a run's
results go and how they are shown."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from recunlearn.errors import ConfigError


def given(ctx: typer.Context, name: str) -> bool:
    """Whether option ``name`` (its parameter name) was set by the user rather than left at its default:
    a preset keeps its own value unless the user asked for another. (Sources are compared by name:
    typer may bring its own copy of click's ``ParameterSource``.)"""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def flag(ctx: typer.Context, name: str) -> str:
    """How the user writes option ``name`` (e.g. ``--batch-users``), for error messages."""
    return next(p.opts[0] for p in ctx.command.params if p.name == name)


def refuse(ctx: typer.Context, names: tuple[str, ...], reason: str) -> None:
    """A one-line error naming the first of ``names`` the user gave, which ``reason`` says has no effect."""
    for name in names:
        if given(ctx, name):
            raise ConfigError(f"{flag(ctx, name)}: {reason}")


def data_option(help: str = "") -> Any:
    """``--data``: the dataset every bench command reads (default: the embedded MovieLens-100K)."""
    return typer.Option(
        "ml-100k",
        "--data",
        metavar="NAME|PATH",
        help=help
        or "Dataset: a registered name (see `recunlearn data list`) or a file or folder in a "
        "known format, e.g. a MovieLens-100K folder; default: the MovieLens-100K embedded in "
        "the recbole wheel.",
    )


def seeds_option(help: str = "") -> Any:
    """``--seed``, repeatable on every bench command."""
    return typer.Option(
        None,
        "--seed",
        metavar="N",
        help=help
        or "Seed (repeat): one run and one results file per seed; default: the protocol's.",
    )


def methods_option(defaults: str) -> Any:
    """``--method`` / ``-m``, repeatable; ``defaults`` says which run when none is given."""
    return typer.Option(
        None, "--method", "-m", metavar="NAME", help=f"Methods (repeat); default {defaults}."
    )


def models_option() -> Any:
    """``--model``, repeatable, on the protocols that run MF and LightGCN side by side."""
    return typer.Option(
        None, "--model", metavar="KIND", help="mf / lightgcn (repeat); default both."
    )


def max_epochs_option(help: str = "Cap on training epochs; default: the protocol's.") -> Any:
    """``--max-epochs``: the one name of the training-length cap."""
    return typer.Option(None, "--max-epochs", min=1, metavar="N", help=help)


def quick_option(help: str = "Seconds-long smoke run on a small synthetic log.") -> Any:
    """``--quick``: every bench command's smoke preset."""
    return typer.Option(False, "--quick", metavar="", help=help)


def out_option(protocol: str) -> Any:
    """``--out``: a results folder on every bench command, under ./runs/ by default."""
    return typer.Option(
        Path(f"runs/{protocol}"),
        "--out",
        metavar="FOLDER",
        help="Results folder: <configuration>-<hardware>.json there, a markdown table beside it; "
        "a rerun of the same configuration overwrites them.",
    )


def with_training(config: Any, max_epochs: int | None, seed: int | None = None) -> Any:
    """``config`` with ``--max-epochs`` and a run's seed, when given, in its training settings."""
    given_values = {"max_epochs": max_epochs, "seed": seed}
    train = {k: v for k, v in given_values.items() if v is not None}
    return config.with_values(train={**config.train, **train}) if train else config


def seed_files(
    out: Path, configuration: str, seeds: list[int] | None
) -> list[tuple[int | None, Path]]:
    """Each run's seed and results file: each seed asked for once, in order, or one run with the
    protocol's own seeds (None). Every file is checked before the first run starts."""
    runs = list(dict.fromkeys(seeds)) if seeds else [None]
    return [(seed, results_file(out, configuration, seed)) for seed in runs]


def quick_or_dataset(ctx: typer.Context, quick: bool, data: str) -> str:
    """The configuration a results file is named after: 'quick', or the dataset. --quick brings its
    own small log, so a --data beside it is refused rather than ignored."""
    if quick:
        refuse(ctx, ("data",), "--quick runs on its own small synthetic log; drop one of them")
    return "quick" if quick else data_name(data)


def given_lists(**values: list[Any] | None) -> dict[str, list[Any]]:
    """The repeatable options given: one left empty keeps the protocol's default list."""
    return {name: value for name, value in values.items() if value}


def over_preset(ctx: typer.Context, preset: bool, **values: Any) -> dict[str, Any]:
    """The options that apply: all of ``values``, or over a preset only those the user typed (the
    preset keeps its own for the rest)."""
    return {name: value for name, value in values.items() if not preset or given(ctx, name)}


def run_and_show(
    run: Callable[..., dict[str, Any]],
    config: Any,
    table: Callable[[dict[str, Any]], str],
    console: Any,
    dimmed_progress: bool = True,
) -> None:
    """Run a protocol, then print its tables and where its results file is. Its progress lines go
    dimmed to ``console``, or, with ``dimmed_progress=False``, wherever the protocol prints them."""
    if dimmed_progress:
        results = run(config, log=lambda m: console.print(f"[dim]{m}[/dim]"))
    else:
        results = run(config)
    print_tables(table(results), console)
    console.print(f"results: {config.output}", markup=False, highlight=False)


def data_name(data: str) -> str:
    """How a results file names a dataset: 'ml100k' for ml-100k or a folder of that name."""
    return re.sub(r"[^a-z0-9]+", "", Path(data).stem.lower()) or "data"


def results_file(out: Path, configuration: str, seed: int | None = None) -> Path:
    """``<out>/<configuration>[-seed<N>]-<hardware>.json``, checked before any work. The folder is
    created only when results are written, so a command that fails leaves none behind."""
    from recunlearn.bench._protocol import hardware_tag

    writable_folder(out, create=False)
    name = configuration + (f"-seed{seed}" if seed is not None else "")
    path = out / f"{name}-{hardware_tag()}.json"
    if path.is_dir():
        raise ConfigError(f"--out {out}: {path.name} there is a folder, not a results file")
    return path


def print_tables(markdown: str, console: Any) -> None:
    """Markdown text as the terminal shows it: each table as rich tables that fit the terminal's
    width, a wide one split into column groups that each repeat its first column (text
    left-aligned, figures right-aligned, as the markdown's rule says)."""
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].startswith("|"):
            console.print(lines[i], markup=False, highlight=False)
            i += 1
            continue
        block = []
        while i < len(lines) and lines[i].startswith("|"):
            block.append(_cells(lines[i]))
            i += 1
        for columns in _column_groups(block, console.width):
            console.print(_table(block, columns))
            console.print()


def _column_groups(block: list[list[str]], width: int) -> list[list[int]]:
    """Columns 1.. in groups that fit ``width`` beside column 0 (a header may wrap at its spaces)."""
    header, rows = block[0], block[2:]

    def need(c: int) -> int:
        words = max((len(w) for w in header[c].split()), default=0)
        return max([words] + [len(row[c]) for row in rows]) + 3

    groups: list[list[int]] = [[]]
    used = need(0)
    for c in range(1, len(header)):
        if groups[-1] and used + need(c) > width:
            groups.append([])
            used = need(0)
        groups[-1].append(c)
        used += need(c)
    return [[0, *group] for group in groups]


def _table(block: list[list[str]], columns: list[int]) -> Any:
    from rich import box
    from rich.table import Table

    header, rule, rows = block[0], block[1], block[2:]
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for c in columns:
        right = rule[c].endswith(":") and not rule[c].startswith(":")
        table.add_column(header[c], justify="right" if right else "left", overflow="fold")
    for row in rows:
        table.add_row(*(row[c] for c in columns))
    return table


def _cells(line: str) -> list[str]:
    cells = re.split(r"(?<!\\)\|", line.strip().strip("|"))
    return [cell.strip().replace("\\|", "|") for cell in cells]


def writable(out: Path, option: str = "--out") -> Path:
    """``out``, once its folder exists and takes files: a run of minutes or hours must not end
    unable to write what it measured. ``option`` names where the path came from, for the error."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"{option} {out}: cannot create its folder ({exc.strerror or exc})"
        ) from None
    if out.is_dir() or not os.access(out.parent, os.W_OK):
        raise ConfigError(f"{option} {out}: cannot write a file there")
    return out


def writable_folder(folder: Path, option: str = "--out", create: bool = True) -> Path:
    """``folder``, created and writable (checked before a run, so it cannot end unable to save);
    ``create=False``: only checked that it could be (its nearest existing folder takes files)."""
    if not create:
        existing = next(p for p in (folder, *folder.absolute().parents) if p.exists())
        if not existing.is_dir() or not os.access(existing, os.W_OK):
            raise ConfigError(
                f"{option} {folder}: cannot create a folder there ({existing} is "
                f"{'not a folder' if not existing.is_dir() else 'not writable'})"
            )
        return folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"{option} {folder}: cannot create the folder ({exc.strerror or exc})"
        ) from None
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"{option} {folder}: cannot write there")
    return folder
