"""The worker's audits of batched requests and its recovery of a staged version."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recunlearn.data.deletion import DeletionRequest
from recunlearn.errors import RecUnlearnError
from recunlearn.service.audit import verify_request
from recunlearn.service.config import ServiceHome
from recunlearn.service.initialize import init_service
from recunlearn.service.store import requests
from recunlearn.service.versions import MANIFEST, current_name, load_current, read_manifest
from recunlearn.service.worker import Worker
from tests.conftest import make_tiny
from tests.service.conftest import SISA


class Crash(Exception):
    """Stands for the worker dying at a stage."""


def _crash_at(stage: str):
    def hook(name: str) -> None:
        if name == stage:
            raise Crash(name)

    return hook


def test_recover_refuses_a_staged_version_whose_manifest_was_rewritten(service):
    """A folder altered between staging and publication (files and manifest rewritten together) is
    not the version the ledger recorded: the worker names it and publishes nothing."""
    home = service.home
    ledger = home.ledger()
    ledger.submit(DeletionRequest(request_id="u7", users=["u7"]))
    with pytest.raises(Crash):
        Worker(home, stage=_crash_at("applied_committed"), ledger=ledger).run(drain=True)
    staged = home.versions / "v000002"
    (staged / MANIFEST).write_text(json.dumps(read_manifest(staged)))  # same content, other bytes
    with pytest.raises(
        RecUnlearnError, match=r"version v000002 .* not the one the ledger recorded"
    ):
        Worker(home, ledger=ledger).run(drain=True)
    assert current_name(home) == "v000001" and ledger.get("u7").status == "received"
    ledger.close()


def test_each_request_of_a_batch_audits_its_own_parts_and_erased_users(service):
    """A user erased in a batch counts for the first request naming it; a sharded method's audit lists
    the shards that held the request's rows, and the batch's changed parts apart."""
    home = service.home
    _, before = load_current(home)
    train = before.train
    u7 = np.flatnonzero(train.user == train.users.index(["u7"])[0])
    u8 = np.flatnonzero(train.user == train.users.index(["u8"])[0])
    u7_item, u8_item = (str(train.items.ids[train.item[rows[0]]]) for rows in (u7, u8))
    ledger = home.ledger()
    ledger.submit(DeletionRequest(request_id="A", users=["u7"]))
    ledger.submit(DeletionRequest(request_id="B", pairs=[("u7", u7_item), ("u8", u8_item)]))
    u8_other = str(train.items.ids[train.item[u8[1]]])
    ledger.submit(DeletionRequest(request_id="C", pairs=[("u8", u8_other)]))
    assert Worker(home, ledger=ledger).run(drain=True) == 3
    a, b, c = (ledger.get(r).audit for r in "ABC")
    assert (a["erased_users"], b["erased_users"], c["erased_users"]) == (1, 0, 0)
    assert b["removed_pair_digests"] == ledger.pair_digests([("u8", u8_item)]), "(u7, item) was A's"
    assert (
        b["changed_parts"] == [f"shard-{before.assignment[u8[0]]}"]
        and b["parts_scope"] == "request"
    )
    assert a["changed_parts"] == sorted(f"shard-{k}" for k in set(before.assignment[u7].tolist()))
    together = [x for x in (a, b, c) if x["version"] == b["version"]]
    assert len(together) >= 2, "A and B are repaired together"
    assert b["batch_changed_parts"] == sorted({p for x in together for p in x["changed_parts"]})
    result = verify_request(home, "B", retrain=True)
    checks = {c.name: c for c in result.checks}
    assert result.ok and result.parts_scope == "request"
    assert "held this request's rows" in checks["exact retraining"].detail

    old = {
        k: v for k, v in b.items() if k not in ("parts_scope", "batch_changed_parts")
    }  # written before both
    with ledger.write() as connection:
        connection.execute(
            requests.update().where(requests.c.id == "B").values(audit=json.dumps(old))
        )
    result = verify_request(home, "B", retrain=True)
    checks = {c.name: c for c in result.checks}
    assert (
        result.ok
        and result.parts_scope == "batch"
        and f"whole batch of {b['batched_with']}" in checks["exact retraining"].detail
    )
    ledger.close()


def test_requests_taken_up_during_a_background_repair_stay_removed_and_are_repaired_next(service):
    """The repair runs in a child process while the worker takes up a new request: the repair version
    is the repaired copy with the new request set aside again, and the next repair makes it exact too."""
    home = service.home
    _, before = load_current(home)
    train = before.train
    shard = before.assignment
    first = 0
    second = next(r for r in range(1, len(train)) if shard[r] == shard[first])
    pair = [
        (str(train.users.ids[train.user[r]]), str(train.items.ids[train.item[r]]))
        for r in (first, second)
    ]
    ledger = home.ledger()
    worker = Worker(home, ledger=ledger)
    worker.acquire()
    ledger.submit(DeletionRequest(request_id="A", pairs=[pair[0]]))
    worker.run_once(background_repair=True)
    job = worker._repair_job
    assert ledger.get("A").status == "removed" and job is not None and job.running()
    ledger.submit(DeletionRequest(request_id="B", pairs=[pair[1]]))
    assert job.process.wait(120) == 0  # finished, not yet collected: B is taken up first
    worker.run_once(background_repair=True)
    a, b = ledger.get("A"), ledger.get("B")
    assert (b.status, b.removed_version) == ("removed", 3)
    assert (a.status, a.version) == ("published", 4) and current_name(home) == "v000004"
    assert not home.repair.exists(), "the repaired copy is deleted once loaded"
    _, served = load_current(home)
    assert served.pending == ["B"] and served.quarantined_parts
    worker.release()
    assert Worker(home, ledger=ledger).run(drain=True) == 1
    assert ledger.get("B").status == "published" and not load_current(home)[1].pending
    ledger.close()
    for request_id in ("A", "B"):
        assert verify_request(home, request_id, retrain=True).ok


def test_a_failed_repair_process_is_reported_and_tried_again(service, monkeypatch):
    """A child that fails leaves the removal version served and its request removed; the worker
    raises its output (the loop logs it and retries) and starts the repair again."""
    home = service.home
    ledger = home.ledger()
    worker = Worker(home, ledger=ledger)
    worker.acquire()
    ledger.submit(DeletionRequest(request_id="A", pairs=[("u1", _item_of(home, "u1"))]))
    monkeypatch.setattr("sys.executable", "false")  # a child that exits with 1 at once
    worker.run_once(background_repair=True)
    assert worker._repair_job.process.wait(60) == 1
    with pytest.raises(RuntimeError, match="repair process exited with 1"):
        worker.run_once(background_repair=True)
    assert ledger.get("A").status == "removed" and not home.repair.exists()
    monkeypatch.undo()
    worker.run_once(background_repair=True)
    assert worker._repair_job is not None and worker._repair_job.process.wait(120) == 0
    worker.run_once(background_repair=True)
    assert ledger.get("A").status == "published"
    worker.release()
    ledger.close()


def _item_of(home, user: str) -> str:
    _, model = load_current(home)
    train = model.train
    return str(train.items.ids[train.item[train.user == train.users.index([user])[0]][0]])


def test_the_store_is_rewritten_once_the_removal_is_served(service):
    """The store's checkpoint (PostgreSQL: VACUUM FULL) runs after the pass has served its version,
    not between a request's acceptance and its removal."""
    home = service.home
    ledger = home.ledger()
    ledger.checkpoint()
    seen: list[tuple[str, bool, str]] = []

    def stage(name: str) -> None:
        if name in ("pointer_renamed", "published_committed", "store_flushed"):
            seen.append((name, ledger.flushed, ledger.get("A").status))

    worker = Worker(home, stage=stage, ledger=ledger)
    worker.acquire()
    ledger.submit(DeletionRequest(request_id="A", pairs=[("u1", _item_of(home, "u1"))]))
    worker.run_once(background_repair=True)
    assert seen == [
        ("pointer_renamed", False, "received"),
        ("published_committed", False, "removed"),
        ("store_flushed", True, "removed"),
    ]
    assert worker._repair_job.process.wait(120) == 0
    worker.run_once(background_repair=True)
    assert ledger.get("A").status == "published"
    seen.clear()
    ledger.submit(DeletionRequest(request_id="B", pairs=[("u2", _item_of(home, "u2"))]))
    ledger.submit(DeletionRequest(request_id="C", pairs=[("u3", _item_of(home, "u3"))]))
    worker.config.batch_size = 1  # C still waits after B's pass: the rewrite waits for it
    worker.run_once(background_repair=True)
    assert ledger.get("B").status == "removed" and not ledger.flushed
    assert "store_flushed" not in {name for name, _, _ in seen}
    worker.run_once(background_repair=True)
    assert ledger.get("C").status == "removed" and ledger.flushed
    worker.release()
    ledger.close()


@pytest.fixture
def refusing_home(store, store_url, tmp_path) -> ServiceHome:
    """A SISA service whose quarantine refuses to set aside every shard (no popularity fallback)."""
    home = ServiceHome(tmp_path / "refusing")
    config = {**SISA, "quarantine_fallback": "none"}
    url = store_url if store == "postgres" else None
    init_service(home, make_tiny(), "sisa", config, database_url=url)
    return home


def _spread_user(model):
    """A user with rows in every one of SISA's three random shards."""
    train, shard = model.train, model.assignment
    return next(
        u for u in train.users.ids if len(set(shard[train.user == train.users.index([u])[0]])) == 3
    )


def test_a_user_in_every_shard_is_removed_at_once_by_serving_popularity(service):
    """Beside a pending request, a user whose rows are in every shard sets the last shard aside: the
    removal version serves the most popular remaining items until the repair brings the shards back."""
    home = service.home
    _, model = load_current(home)
    row = int(np.flatnonzero(model.assignment == 0)[0])
    ledger = home.ledger()
    ledger.submit(DeletionRequest.from_rows(model.train, [row], request_id="A"))
    ledger.submit(DeletionRequest(request_id="B", users=[str(_spread_user(model))]))
    worker = Worker(home, ledger=ledger)
    worker.acquire()
    worker.run_once(background_repair=True)
    a, b = ledger.get("A"), ledger.get("B")
    assert (a.status, b.status) == ("removed", "removed") and b.audit["removed_exact"]
    assert b.audit["details"]["serving"] == "popularity"
    _, served = load_current(home)
    assert served.quarantined_parts == ["shard-0", "shard-1", "shard-2"]
    assert worker._repair_job.process.wait(120) == 0
    worker.run_once(background_repair=True)
    assert {ledger.get(r).status for r in "AB"} == {"published"}
    worker.release()
    ledger.close()
    for request_id in "AB":
        assert verify_request(home, request_id, retrain=False).ok


def test_a_request_that_cannot_be_set_aside_waits_while_the_batch_goes_on(refusing_home):
    """Without the popularity fallback, beside a pending request, a user whose rows are in every
    shard cannot be set aside: it waits for the repair, while a later request of the batch is taken up."""
    home = refusing_home
    _, model = load_current(home)
    train, shard = model.train, model.assignment
    row = {k: int(np.flatnonzero(shard == k)[0]) for k in (0, 1)}
    everywhere = _spread_user(model)
    ledger = home.ledger()
    ledger.submit(DeletionRequest.from_rows(train, [row[0]], request_id="A"))
    ledger.submit(DeletionRequest(request_id="B", users=[str(everywhere)]))
    ledger.submit(DeletionRequest.from_rows(train, [row[1]], request_id="C"))
    worker = Worker(home, ledger=ledger)
    worker.acquire()
    worker.run_once(background_repair=True)
    a, b, c = (ledger.get(r) for r in "ABC")
    assert (a.status, b.status, c.status) == ("removed", "received", "removed")
    assert a.removed_version == c.removed_version == 2
    assert c.audit["held_parts"] == [f"shard-{shard[row[1]]}"]
    worker.run_once(background_repair=True)  # B is not tried again before the repair
    assert ledger.get("B").status == "received" and current_name(home) == "v000002"
    assert worker._repair_job.process.wait(120) == 0
    worker.run_once(background_repair=True)
    assert {ledger.get(r).status for r in "AC"} == {"published"}
    worker.release()
    assert Worker(home, ledger=ledger).run(drain=True) == 1
    assert ledger.get("B").status == "published"
    ledger.close()
    for request_id in "ABC":
        assert verify_request(home, request_id, retrain=False).ok
