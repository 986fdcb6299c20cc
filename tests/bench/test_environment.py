"""Results documents say which code produced them."""

from __future__ import annotations

import subprocess
from pathlib import Path

from recunlearn.bench import experiment


def test_environment_names_the_source_commit():
    commit = experiment.environment()["commit"]
    root = Path(experiment.__file__).resolve().parents[3]
    if (root / ".git").exists() and (root / "src" / "recunlearn").is_dir():  # an editable source checkout
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
        assert commit in (head, head + "+changes")
    else:  # an installed wheel or an unpacked archive: no history to name
        assert commit is None


def test_source_commit_is_read_once_per_process(monkeypatch):
    """A long benchmark names the code it started with, not a tree edited while it ran."""
    first = experiment.source_commit()

    def git_again(*args, **kwargs):
        raise AssertionError("source_commit read git a second time")

    monkeypatch.setattr(experiment.subprocess, "run", git_again)
    assert experiment.source_commit() == first
