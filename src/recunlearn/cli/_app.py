"""The typer applications every CLI module adds its commands to.

Each module of this package (other than those starting with '_') is imported by :func:`main` and
registers its commands on :data:`app` or on a sub-application, so a new command touches one file.
"""

from __future__ import annotations

import typer

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
