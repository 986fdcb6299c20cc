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
