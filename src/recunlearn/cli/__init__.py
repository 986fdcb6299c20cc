"""The ``recunlearn`` command."""

from __future__ import annotations

import importlib
import pkgutil
import sys

from pydantic import ValidationError

from recunlearn.cli._app import app
from recunlearn.errors import RecUnlearnError, validation_problems
from recunlearn.train.runtime import retain_freed_memory


def _load_commands() -> None:
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


def main(argv: list[str] | None = None) -> None:
    """Entry point: bad input ends with a one-line error naming what is wrong (exit code 2)."""
    retain_freed_memory()  # an application's choice, made once (see its docstring)
    _load_commands()
    try:
        app(args=argv, standalone_mode=True)
    except RecUnlearnError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except ValidationError as exc:  # an option value a settings model refuses (e.g. --fraction 2)
        print(f"error: invalid {exc.title}: {validation_problems(exc)}", file=sys.stderr)
        sys.exit(2)
