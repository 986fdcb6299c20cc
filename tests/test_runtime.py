"""The process-level settings applications make: the allocator keeps freed memory (issue #3)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

PROBE = """
import json, sys
from recunlearn.cli import main
from recunlearn.train.runtime import allocator_settings
from recunlearn.bench._results import environment
try:
    main(["methods"])
except SystemExit:
    pass
print(json.dumps({"settings": allocator_settings(), "recorded": environment()["hardware"]["retain_freed_memory"]}))
"""


def probe(**env: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_the_cli_keeps_freed_memory_and_results_say_so():
    result = probe()
    assert result == {"settings": {"retain_freed_memory": True}, "recorded": True}


def test_the_allocator_is_left_alone_when_asked():
    result = probe(RECUNLEARN_RETAIN_MEMORY="0")
    assert result == {"settings": {"retain_freed_memory": False}, "recorded": False}


def test_importing_the_library_changes_nothing():
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import recunlearn, recunlearn.bench.experiment, recunlearn.bench._results as r;"
            "print(r.environment()['hardware']['retain_freed_memory'])",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "False"
