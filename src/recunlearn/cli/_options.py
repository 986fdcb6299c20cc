"""What the bench commands share: which options were typed, and where a preset's results go."""

from __future__ import annotations

import os
from pathlib import Path

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


def results_path(ctx: typer.Context, out: Path, protocol: str, preset: str | None) -> Path:
    """``out`` as given; by default a preset's run writes ``benchmarks/results/<protocol>/<preset>.json``
    (as `bench all` names them), never the full benchmark's file that the docs cite. Checked writable."""
    if preset is None or given(ctx, "out"):
        return writable(out)
    return writable(Path("benchmarks/results") / protocol / f"{preset}.json")


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
