"""SIGKILL the worker at many points of processing; after restarts nothing acknowledged is lost or
published twice, the served version is always complete, and no deleted interaction is left anywhere.

The worker runs in a forked child (the same code path as `recunlearn worker`, without re-importing
torch for each of the kills); its ``stage`` hook kills it with SIGKILL at a named step, at the n-th
time it gets there, or a given time after it gets there (landing inside retraining or saving, or
just after the pass where the machine outruns the delay).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import threading
import time
from collections import Counter

import numpy as np
import pytest
import torch

from recunlearn.data.deletion import DeletionRequest
from recunlearn.service.audit import verify_request
from recunlearn.service.config import ServiceHome
from recunlearn.service.store import Ledger
from recunlearn.service.versions import check_version, current_name, load_current
from recunlearn.service.worker import STAGES, Worker, WorkerBusyError
from tests.service.conftest import model_pairs, stored_pairs

KILLS = [
    # (stage, nth time reached, delay in seconds after reaching it)
    ("recovered", 1, 0.0),
    ("claimed", 1, 0.0),
    ("model_loaded", 1, 0.0),
    ("forget_started", 1, 0.0),
    ("forget_started", 1, 0.01),  # inside quarantine or saving
    ("repair_started", 1, 0.0),  # between the phases: the removal version is served
    ("repair_started", 1, 0.01),  # inside retraining the quarantined shards
    ("repair_started", 1, 0.04),
    ("repair_done", 1, 0.0),
    ("repair_merged", 1, 0.0),
    ("saved", 2, 0.0),  # the repair version's
    ("store_deleted", 2, 0.0),
    ("applied_committed", 2, 0.0),
    ("pointer_renamed", 2, 0.0),
    ("published_committed", 2, 0.0),
    ("forgotten", 1, 0.0),
    ("forgotten", 1, 0.003),  # inside saving
    ("saved", 1, 0.0),
    ("manifest_written", 1, 0.0),
    ("version_renamed", 1, 0.0),
    ("store_deleted", 1, 0.0),  # inside the ledger transaction, before COMMIT
    ("applied_committed", 1, 0.0),
    ("pointer_written", 1, 0.0),  # during recovery of the version applied above
    ("pointer_renamed", 1, 0.0),  # again during recovery
    ("published_committed", 1, 0.0),
    ("removed_old_version", 1, 0.0),
    ("cleaned", 1, 0.0),
    ("pointer_written", 1, 0.0),  # mid-publish in a normal pass
    ("pointer_renamed", 1, 0.0),
    ("recovered", 2, 0.0),  # after a whole pass, before looking for more
    ("version_renamed", 1, 0.0),
    ("store_deleted", 1, 0.0),
    ("store_flushed", 1, 0.0),  # after the pass served its versions and rewrote the store
]


def _run_worker(home_path: str, stage_name: str, nth: int, delay: float) -> None:
    torch.set_num_threads(1)  # a forked child must not use the parent's OpenMP pool: it would hang
    seen = Counter()
    timers: list[threading.Timer] = []

    def kill_now() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    def stage(name: str) -> None:
        seen[name] += 1
        if name == stage_name and seen[name] == nth:
            if delay:
                timers.append(threading.Timer(delay, kill_now))
                timers[-1].start()
            else:
                kill_now()

    Worker(ServiceHome(home_path), stage=stage).run(drain=True)
    for timer in timers:  # the pass outran the delay (a fast machine): the kill lands just after it
        timer.join()
    os._exit(0)


def _kill_at(home: ServiceHome, stage_name: str, nth: int, delay: float) -> int:
    process = multiprocessing.get_context("fork").Process(
        target=_run_worker, args=(str(home.path), stage_name, nth, delay)
    )
    process.start()
    process.join(120)
    return process.exitcode


def _check_invariants(home: ServiceHome, submitted: dict[str, DeletionRequest]) -> None:
    served = current_name(home)
    assert served is not None and check_version(home.versions / served) == [], (
        "served version is complete"
    )
    _, model = load_current(home)
    ledger = home.ledger()
    try:
        records = {r.request_id: r for r in ledger.records()}
        assert set(records) == set(submitted), "no acknowledged request is lost"
        published = [
            e["request_id"] for e in ledger.events() if e["kind"] == "published" and e["request_id"]
        ]
        assert max(Counter(published).values(), default=1) == 1, "no request is published twice"
        staged = [v["name"] for v in ledger.staged_versions()]
        with ledger.engine.connect() as connection:
            live = [
                row[0]
                for row in connection.exec_driver_sql(
                    "SELECT name FROM versions WHERE status = 'published'"
                )
            ]
        assert len(live) == 1 and served in live + staged, (
            "the pointer names the published or the staged version"
        )
        stored = stored_pairs(home)
        for record in records.values():
            assert record.status != "failed", record.error
            request = submitted[record.request_id]
            if record.removed_version is not None:
                assert record.request is None, "a request taken up keeps digests, not ids"
                assert ledger.matching_digests(record.proof) == 0, (
                    "taken up by a version means deleted from the store"
                )
                assert not stored & set(request.pairs), "also by the ids themselves"
            if record.status in ("removed", "repaired", "published"):
                known = request.known_to(model.train)
                assert known is None or not known.rows(model.train).any(), (
                    "removed means gone from the served model"
                )
                assert not any(u in model.train.users for u in request.users), (
                    "and users deleted whole erased"
                )
    finally:
        ledger.close()


def _request(model, number: int, one_row: bool = False) -> DeletionRequest:
    """Alternately a whole user and three single interactions still in the training data; one
    interaction (one shard: it is quarantined, then repaired) for a kill in the repair phase."""
    train = model.train
    rng = np.random.default_rng(number)
    if one_row:
        row = rng.choice(len(train), size=1)
        return DeletionRequest.from_rows(train, row, request_id=f"req-{number}")
    if number % 2 == 0:
        user = rng.choice(np.unique(train.user))
        return DeletionRequest(request_id=f"req-{number}", users=[str(train.users.ids[user])])
    rows = rng.choice(len(train), size=3, replace=False)
    return DeletionRequest.from_rows(train, rows, request_id=f"req-{number}")


@pytest.mark.slow
def test_worker_survives_sigkill_at_every_stage(service):
    home = service.home
    assert len({(s, n, d) for s, n, d in KILLS}) >= 20 and {s for s, _, _ in KILLS} == set(STAGES)
    submitted: dict[str, DeletionRequest] = {}
    _, model = load_current(home)
    for number, (stage_name, nth, delay) in enumerate(KILLS):
        repair_phase = stage_name.startswith("repair") or nth == 2
        if repair_phase:  # what earlier kills left waiting is settled first: one request, one shard
            assert _kill_at(home, "no such stage", 1, 0.0) == 0
            _, model = load_current(home)
        request = _request(model, number, repair_phase)
        ledger = home.ledger()
        ledger.submit(request)
        ledger.close()
        submitted[request.request_id] = request
        exitcode = _kill_at(home, stage_name, nth, delay)
        assert exitcode == -signal.SIGKILL, (
            f"the worker was killed at {stage_name} (exit code {exitcode})"
        )
        _check_invariants(home, submitted)
        _, model = load_current(home)

    assert _kill_at(home, "no such stage", 1, 0.0) == 0, "a restarted worker drains the queue"
    _check_invariants(home, submitted)

    ledger = home.ledger()
    records = ledger.records()
    kinds = {
        kind: Counter(
            rid
            for v in _versions(ledger)
            if v["kind"] == kind
            for rid in json.loads(v["request_ids"])
        )
        for kind in ("removal", "repair", "full")
    }
    removed = [e["request_id"] for e in ledger.events() if e["kind"] == "removed"]
    ledger.close()
    assert {r.status for r in records} == {"published"} and len(records) == len(KILLS)
    assert all(
        (kinds["removal"][r.request_id], kinds["repair"][r.request_id]) in ((1, 1), (0, 0))
        and kinds["removal"][r.request_id] + kinds["full"][r.request_id] == 1
        for r in records
    ), "each request is in one removal and one repair version, or in one full version"
    assert max(Counter(removed).values()) == 1 and kinds["repair"], "two phases, each once"
    _, model = load_current(home)
    assert model_pairs(model) == stored_pairs(home), (
        "the served model trains on exactly what the store holds"
    )
    for request in submitted.values():
        known = request.known_to(model.train)
        assert known is None or not known.rows(model.train).any()
    results = [verify_request(home, rid, retrain=rid == "req-0") for rid in submitted]
    failed = [(r.request_id, [c for c in r.checks if not c.ok]) for r in results if not r.ok]
    assert not failed


def _run_background_worker(home_path: str, pid_file: str) -> None:
    """A worker as `recunlearn worker` runs it (the repair in a child process), SIGKILLed a second
    after it starts a repair, with the child's pid written down if the child is running then."""
    torch.set_num_threads(1)

    def kill_while_repairing() -> None:
        job = worker._repair_job
        if job is None or not job.running():
            os._exit(3)
        with open(pid_file, "w") as fh:
            fh.write(str(job.process.pid))
        os.kill(os.getpid(), signal.SIGKILL)

    def stage(name: str) -> None:
        if name == "repair_started":
            threading.Timer(1.0, kill_while_repairing).start()

    worker = Worker(ServiceHome(home_path), stage=stage)
    worker.run(threading.Event())
    os._exit(4)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in "ZX"
    except FileNotFoundError:
        return False


def test_a_worker_killed_during_its_repair_process_loses_nothing(service, tmp_path):
    """SIGKILL the worker while its child process repairs: the child goes too, holding the worker
    lock until it has gone; the removal version stays served; a restarted worker repairs again."""
    home = service.home
    _, model = load_current(home)
    request = _request(model, 0, one_row=True)
    ledger = home.ledger()
    ledger.submit(request)
    ledger.close()
    pid_file = tmp_path / "child.pid"
    process = multiprocessing.get_context("fork").Process(
        target=_run_background_worker, args=(str(home.path), str(pid_file))
    )
    process.start()
    process.join(120)
    assert process.exitcode == -signal.SIGKILL, "killed while its repair process ran"
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 30
    waiting = Worker(home)
    while True:
        try:
            waiting.acquire()
            waiting.release()
            break
        except WorkerBusyError:
            assert time.monotonic() < deadline, "the repair process ended with its worker"
            time.sleep(0.01)
    assert not _alive(child), "the lock was free only once the repair process was gone"
    ledger = home.ledger()
    record = ledger.get(request.request_id)
    ledger.close()
    assert record.status == "removed" and current_name(home) == f"v{record.removed_version:06d}"
    _check_invariants(home, {request.request_id: request})
    assert _kill_at(home, "no such stage", 1, 0.0) == 0, "a restarted worker repairs"
    _check_invariants(home, {request.request_id: request})
    assert not home.repair.exists()
    ledger = home.ledger()
    assert ledger.get(request.request_id).status == "published"
    ledger.close()
    result = verify_request(home, request.request_id, retrain=True)
    assert result.ok, [c for c in result.checks if not c.ok]


def _versions(ledger: Ledger) -> list[dict]:
    with ledger.engine.connect() as connection:
        return [
            dict(row) for row in connection.exec_driver_sql("SELECT * FROM versions").mappings()
        ]


def test_load_current_retries_whatever_a_version_switch_mid_read_raises(service, monkeypatch):
    """The worker deletes the old folder right after moving the pointer: a reader caught in between may
    see a missing table or a cut safetensors file, not only an OSError; it reads the new version."""
    import recunlearn.service.versions as versions
    from recunlearn.errors import DataError

    served = current_name(service.home)
    pointers = iter(["v000001", "v000002"])  # the pointer moves while the first read runs
    monkeypatch.setattr(versions, "current_name", lambda home: next(pointers, "v000002"))
    real = versions.load_version

    def load(home, name):
        if name == "v000001":
            raise DataError("no such file: train.npz")
        return real(home, served)

    monkeypatch.setattr(versions, "load_version", load)
    name, model = versions.load_current(service.home)
    assert name == "v000002" and len(model.train)
    monkeypatch.setattr(
        versions, "current_name", lambda home: "v000001"
    )  # it did not move: the error stands
    with pytest.raises(DataError):
        versions.load_current(service.home)
