"""docs/own-model.md's snippets run as written, in order, in a fresh interpreter (as a reader runs them)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "own-model.md"


def test_own_model_page_runs(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 5, "the page's worked example"
    script = tmp_path / "own_model.py"
    script.write_text("\n".join(blocks))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
        "RECUNLEARN_PROGRESS": "0",
    }
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "runs" / "adopted" / "unlearner.json").is_file()
    assert all(
        (tmp_path / "runs" / name / "weights.safetensors").is_file()
        for name in ("retrain", "sisa", "finetune", "ifru")
    )
