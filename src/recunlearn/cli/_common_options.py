"""What the non-bench commands share: an output folder that a failed command does not leave behind."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from recunlearn.cli._options import writable_folder
from recunlearn.errors import ConfigError


def _succeeded(exc: BaseException) -> bool:
    """Whether an exception is a command ending well (``typer.Exit()`` or ``sys.exit(0)``)."""
    code = getattr(exc, "exit_code", getattr(exc, "code", None))
    return isinstance(exc, (typer.Exit, SystemExit)) and code in (0, None)


@contextmanager
def output_folder(folder: Path, option: str = "--out", keep_partial: bool = True) -> Iterator[Path]:
    """``folder``, created and checked writable before the work; if the work fails, the folders
    created here are removed again: the empty ones, or everything in them with ``keep_partial=False``
    (a half-written report is no report; a demo's finished first part is worth keeping). A write
    the system refuses there (permissions, a full disk) is a one-line error naming ``option``."""
    absolute = folder.absolute()
    existing = next(p for p in (absolute, *absolute.parents) if p.exists())
    created = [
        p for p in (absolute, *absolute.parents) if p != existing and p.is_relative_to(existing)
    ]
    writable_folder(folder, option)
    try:
        yield folder
    except BaseException as exc:
        if not _succeeded(exc):
            _remove(created, keep_partial)
        if isinstance(exc, OSError) and _inside(exc.filename, absolute):
            raise ConfigError(
                f"{option} {folder}: cannot write there ({exc.strerror or exc})"
            ) from None
        raise


def _inside(filename: object, folder: Path) -> bool:
    return isinstance(filename, (str, Path)) and Path(filename).absolute().is_relative_to(folder)


def _remove(created: list[Path], keep_partial: bool) -> None:
    """``created`` (innermost first): each removed if empty; with ``keep_partial=False`` the outermost
    with all it holds."""
    if not created:
        return
    if not keep_partial:
        shutil.rmtree(created[-1], ignore_errors=True)
        return
    for path in created:
        empty_folders = sorted(
            (p for p in path.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
        )
        for inner in empty_folders:
            if not any(inner.iterdir()):
                inner.rmdir()
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
