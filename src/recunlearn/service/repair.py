"""The worker's repair, in a child process, so that the worker keeps taking up new requests meanwhile.

The child loads the served version, retrains its set-aside parts for every pending request and writes
the repaired model and a ``result.json`` into the home's ``repair/`` folder; the worker loads them,
sets aside again what it took up meanwhile, and publishes the repair version itself (the child writes
no version and touches no ledger). The child shares the worker's lock, so no other worker starts
before it is gone, and it exits when the worker does (its stdin closes), SIGKILL included: a
restarted worker deletes the folder and repairs again.

    python -m recunlearn.service.repair HOME
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import IO

from recunlearn.service.config import ServiceHome
from recunlearn.service.versions import load_current
from recunlearn.train.runtime import PROGRESS_ENV, configure_threads
from recunlearn.unlearn.base import PartChange, Unlearner

RESULT = "result.json"
MODEL = "model"
LOG = "repair.log"


@dataclass
class Repaired:
    """A repair of the served version ``base``; ``model`` None when it was not due yet."""

    base: str
    model: Unlearner | None
    parts: list[PartChange]
    pending: list[str]
    started: float
    finished: float


def repair_served(home: ServiceHome) -> Repaired:
    """Load the served version and repair its pending requests (unless its policy says not yet)."""
    base, model = load_current(home)
    pending = model.pending
    started = time.time()
    if model.pending and not model.repair_due():
        return Repaired(base, None, [], pending, started, started)
    report = model.repair()
    parts = list(report.parts) if report is not None else []
    return Repaired(base, model, parts, pending, started, time.time())


class RepairProcess:
    """``repair_served`` running in a child process, writing into ``home.repair``."""

    def __init__(self, home: ServiceHome, lock_fd: int):
        self.folder = home.repair
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True)
        self._log: IO[bytes] = open(self.folder / LOG, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "recunlearn.service.repair", str(home.path)],
            stdin=subprocess.PIPE,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            pass_fds=(lock_fd,),  # the worker lock stays held while the child lives
            env={**os.environ, PROGRESS_ENV: "0"},
        )

    def running(self) -> bool:
        return self.process.poll() is None

    def result(self) -> Repaired:
        """The finished child's repair (the folder is deleted); a RuntimeError naming its output if
        it failed."""
        self._close()
        try:
            if self.process.returncode != 0:
                output = (self.folder / LOG).read_text(errors="replace").strip()
                raise RuntimeError(
                    f"the repair process exited with {self.process.returncode}: {output[-2000:]}"
                )
            result = json.loads((self.folder / RESULT).read_text())
            model = Unlearner.load(self.folder / MODEL) if result["due"] else None
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
        return Repaired(
            result["base"],
            model,
            [PartChange.model_validate(p) for p in result["parts"]],
            result["pending"],
            result["started"],
            result["finished"],
        )

    def stop(self) -> None:
        """End the child (its repair is lost; the next worker pass starts it again)."""
        if self.process.poll() is None:
            self.process.kill()
        self._close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait()
        self._log.close()


def _exit_with_the_worker() -> None:
    """Wait for the worker's end of stdin to close (the worker stopped or died), then exit at once."""
    while os.read(0, 4096):  # unbuffered: a buffered read's lock would block the interpreter's exit
        pass
    os._exit(1)


def main(home_path: str) -> None:
    threading.Thread(target=_exit_with_the_worker, daemon=True).start()
    configure_threads()
    home = ServiceHome(home_path)
    done = repair_served(home)
    if done.model is not None:  # like a version: no list of the forgotten pairs
        done.model.save(home.repair / MODEL, keep_forgotten=False)
    temporary = home.repair / f"{RESULT}.tmp"
    temporary.write_text(
        json.dumps(
            {
                "base": done.base,
                "due": done.model is not None,
                "parts": [p.model_dump(mode="json") for p in done.parts],
                "pending": done.pending,
                "started": done.started,
                "finished": done.finished,
            }
        )
    )
    os.replace(temporary, home.repair / RESULT)


if __name__ == "__main__":
    main(*sys.argv[1:])
