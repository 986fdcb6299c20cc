"""The command line as a user meets it: --version, --json listings, help in words rather than Python
annotations, one-line errors when output cannot be written, and no folder left by a failed command."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from recunlearn import __version__
from recunlearn.cli import _load_commands, main
from recunlearn.cli._app import app

_load_commands()
runner = CliRunner()


def _command_paths(command, prefix=()):
    yield prefix
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _command_paths(sub, (*prefix, name))


COMMANDS = list(_command_paths(typer.main.get_command(app)))


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"recunlearn {__version__}"


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "recunlearn")
def test_help_shows_no_python_annotations(path):
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    annotation = re.search(
        r"<(str|int|float|bool|path|Path|list\[[^]]*\])>|list\[|\bbool\b", result.output
    )
    assert annotation is None, f"{' '.join(path)} --help shows {annotation.group(0)!r}"


def test_every_command_is_reached():
    names = {" ".join(p) for p in COMMANDS}
    assert {"demo", "run", "methods", "report", "data list", "data info", "bench ifru"} <= names


@pytest.mark.parametrize(
    "args, key, expected",
    [(["methods"], "name", {"retrain", "sisa", "ifru"}), (["data", "list"], "name", {"ml-100k"})],
)
def test_listings_as_json(args, key, expected):
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)
    assert expected <= {entry[key] for entry in listed}
    assert all(isinstance(entry, dict) and len(entry) >= 2 for entry in listed)


def _results_file(tmp_path: Path) -> Path:
    from recunlearn.bench._results import write_results

    path = tmp_path / "exact" / "tiny.json"
    write_results(path, [{"method": "retrain", "auc": 0.7, "forget_seconds": 2.0}], {}, "test")
    return path


def test_a_report_that_cannot_be_written_is_one_line_and_leaves_no_folder(
    tmp_path, capsys, monkeypatch
):
    """As a read-only place or a full disk answers: the write fails inside the new folder."""
    results = _results_file(tmp_path)
    out = tmp_path / "new" / "report"
    write_bytes = Path.write_bytes

    def refused(self, data):
        if self.is_relative_to(out):
            raise PermissionError(13, "Permission denied", str(self))
        return write_bytes(self, data)

    monkeypatch.setattr(Path, "write_bytes", refused)
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(results), "--out", str(out)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --out {out}: cannot write there (Permission denied)")
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "new").exists()


def test_a_report_where_no_folder_can_be_made_is_one_line(tmp_path, capsys):
    results = _results_file(tmp_path)
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(SystemExit):
        main(["report", str(results), "--out", str(tmp_path / "file" / "report")])
    err = capsys.readouterr().err
    assert err.startswith("error: --out") and len(err.strip().splitlines()) == 1


def test_a_report_into_a_new_folder_is_written(tmp_path):
    results = _results_file(tmp_path)
    result = runner.invoke(app, ["report", str(results), "--out", str(tmp_path / "a" / "b")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "a" / "b" / "report.html").is_file()


def test_a_failed_demo_leaves_no_folder(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--data", "no-such-data", "--no-llm", "--out", str(tmp_path / "a" / "demo")])
    assert exit_info.value.code == 2
    assert "no-such-data" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


def test_a_failed_run_leaves_no_folder(tmp_path, capsys):
    config = tmp_path / "exp.toml"
    out = tmp_path / "results" / "deep" / "run.json"
    config.write_text(f'output = "{out}"\ndata = {{ dataset = "no-such-data" }}\n')
    with pytest.raises(SystemExit):
        main(["run", str(config)])
    assert "no-such-data" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


def test_a_folder_that_existed_stays(tmp_path, capsys):
    (tmp_path / "mine").mkdir()
    with pytest.raises(SystemExit):
        main(["demo", "--data", "no-such-data", "--no-llm", "--out", str(tmp_path / "mine")])
    assert (tmp_path / "mine").is_dir()


def test_the_demo_says_its_language_model_part_is_a_smoke_run(tmp_path, capsys, monkeypatch):
    """Its AUCs near 0.5 beside a logistic regression's 0.76 must not read as APA's result."""
    from recunlearn.bench import apa
    from recunlearn.cli import commands

    monkeypatch.setattr(apa, "run_demo", lambda out, console: {"samples": {"train": 96}})
    commands._llm_demo(tmp_path)
    note = capsys.readouterr().out
    assert "smoke run, not a result: 96 training prompts" in note and "docs/apa.md" in note
