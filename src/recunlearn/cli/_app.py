"""The typer applications every CLI module adds its commands to.

Each module of this package (other than those starting with '_') is imported by :func:`main` and
registers its commands on :data:`app` or on a sub-application, so a new command touches one file.
"""

from __future__ import annotations

import re
from typing import Any

import typer
from typer.core import TyperArgument, TyperOption

from recunlearn import __version__

app = typer.Typer(
    name="recunlearn",
    help="Make recommenders forget: exact and approximate unlearning "
    "(APA, IFRU, SISA, RecEraser, ...) and their evaluation.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
bench_app = typer.Typer(
    help="Benchmark protocols that run methods side by side and write results.",
    no_args_is_help=True,
)
data_app = typer.Typer(help="Inspect datasets.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
app.add_typer(data_app, name="data")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"recunlearn {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_print_version,
        is_eager=True,
        help="Print the version and exit.",
    ),
) -> None:
    """Make recommenders forget: exact and approximate unlearning (APA, IFRU, SISA, RecEraser, ...)
    and their evaluation."""


_WORDS = {"str": "TEXT", "int": "INTEGER", "float": "FLOAT", "bool": "BOOLEAN", "path": "PATH"}
"""Python type names as the words click's help uses for values."""


def _value_label(param: TyperOption | TyperArgument, ctx: Any) -> str | None:
    """What help shows for a parameter's value: its metavar, else click's word for its type (TEXT,
    INTEGER, PATH; a choice's values); nothing for a flag. Typer shows the Python annotation instead
    (``<list[str]>``, ``<bool>``), which reads as code to someone typing a command."""
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return None
    if isinstance(param, TyperOption) and param.metavar is not None:
        return param.metavar
    label = param.display_type(ctx).strip("<>").removesuffix(" range")
    label = re.sub(r"^list\[(.*)\]$", r"\1", label)
    return _WORDS.get(label.lower(), label)


TyperOption.display_type_rich = _value_label  # type: ignore[method-assign]
TyperArgument.display_type_rich = _value_label  # type: ignore[method-assign]
