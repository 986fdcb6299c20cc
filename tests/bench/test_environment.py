"""Results documents say which code produced them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from recunlearn.bench import _results


def test_environment_names_the_source_commit():
    commit = _results.environment()["commit"]
    root = Path(_results.__file__).resolve().parents[3]
    if (root / ".git").exists() and (
        root / "src" / "recunlearn"
    ).is_dir():  # an editable source checkout
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert commit in (head, head + "+changes")
    else:  # an installed wheel or an unpacked archive: no history to name
        assert commit is None


def test_results_files_name_the_commit_too(tmp_path):
    """Every protocol's file records one environment: commit, versions and hardware."""
    path = tmp_path / "scaling" / "r.json"
    _results.write_results(path, [{"method": "retrain", "fit_seconds": 1.0}], {"seed": 0})
    recorded = json.loads(path.read_text())["environment"]
    assert recorded["commit"] == _results.environment()["commit"]
    assert recorded["hardware"]["cpu_count"] >= 1 and recorded["versions"]["numpy"]


def test_source_commit_is_read_once_per_process(monkeypatch):
    """A long benchmark names the code it started with, not a tree edited while it ran."""
    first = _results.source_commit()

    def git_again(*args, **kwargs):
        raise AssertionError("source_commit read git a second time")

    monkeypatch.setattr(_results.subprocess, "run", git_again)
    assert _results.source_commit() == first
