"""`recunlearn report RESULTS.json ...`: an HTML page and a markdown file with plots from results files."""

from __future__ import annotations

from pathlib import Path

import typer

from recunlearn.cli._app import app
from recunlearn.cli._common_options import output_folder


@app.command()
def report(
    results: list[Path] = typer.Argument(..., help="Results JSON files (one section each)."),
    out: Path | None = typer.Option(
        None,
        metavar="FOLDER",
        help="Folder for report.html, report.md and figures/ "
        "(default: '<first results file without .json>-report' beside it).",
    ),
) -> None:
    """Plots (utility vs time, speed-up, completeness, scaling), tables, and what produced the results."""
    from recunlearn.bench.report import write_report
    from recunlearn.cli._options import writable_folder

    folder = writable_folder(out or results[0].with_name(results[0].stem + "-report"), create=False)
    with output_folder(folder, keep_partial=False):
        paths = write_report(results, folder)
    typer.echo(f"html: {paths['html']}\nmarkdown: {paths['markdown']}")
