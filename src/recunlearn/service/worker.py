"""The worker: takes waiting deletion requests, makes the model forget them, publishes a new version.

Each pass is a sequence of steps that leaves a state a restarted worker can finish from:

1. recover: publish a version the ledger recorded but the pointer does not name yet; delete folders
   of versions that are not served (crashed staging folders, retired versions);
2. claim up to ``batch_size`` received requests (under the worker lock: one worker per service; a
   second worker waits for the lock, trying again with back-off);
3. load the served model, quarantine the requests (set aside the parts that held their rows), or
   ``forget_many`` them when none can be set aside and nothing is pending;
4. write the new version (staging folder, fsync, rename to ``versions/vNNNNNN``);
5. one transaction: delete the requests' interactions from the store, record their audit and the
   staged version that takes them up;
6. switch the ``CURRENT`` pointer (atomic rename), then mark the version and requests published;
7. delete the previous version's folder;
8. at the end of the pass, once its versions are served: rewrite the store's files (checkpoint), so
   no deleted row's bytes stay there and no removal waits for it.

The repair of the requests a removal version set aside runs in a child process
(:mod:`recunlearn.service.repair`) while the passes go on; its result is published as above.

A crash before 5 leaves the requests waiting (redone from scratch, the orphan folder is deleted);
a crash after 5 leaves them taken up by a complete staged folder, and step 1 publishes it. So every
acknowledged request is published exactly once and the pointer only ever names a complete version.

The steps stay in one module so that their order, which crash recovery depends on, reads top to
bottom.
"""

from __future__ import annotations

import fcntl
import logging
import shutil
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from recunlearn.data.deletion import DeletionRequest
from recunlearn.data.interactions import Interactions
from recunlearn.errors import RecUnlearnError
from recunlearn.service.config import ServiceHome
from recunlearn.service.repair import Repaired, RepairProcess, repair_served
from recunlearn.service.store import DeletionRecord, Ledger
from recunlearn.service.versions import (
    MANIFEST,
    Stage,
    check_version,
    current_name,
    file_sha256,
    load_current,
    part_hashes,
    point_to,
    remove_unserved,
    stage_version,
)
from recunlearn.unlearn.base import PartChange, Unlearner, UnlearningReport
from recunlearn.unlearn.sharded import ShardedUnlearner

log = logging.getLogger(__name__)

STAGES = (
    "recovered",
    "claimed",
    "model_loaded",
    "forget_started",
    "forgotten",
    "saved",
    "manifest_written",
    "version_renamed",
    "store_deleted",
    "applied_committed",
    "pointer_written",
    "pointer_renamed",
    "published_committed",
    "removed_old_version",
    "cleaned",
    "repair_started",
    "repair_done",
    "repair_merged",
    "store_flushed",
)
"""Every step at which the worker calls its ``stage`` hook, in order."""


REPAIR_RECHECK_SECONDS = 60.0
"""How long the worker trusts that a repair is not due yet (its policy waits for more requests or a
time of day) before loading the served version to ask again."""

STORE_FLUSH_MAX_DELAY = 10.0
"""Longest time, in seconds, the worker puts off rewriting the store's files while requests keep
waiting (it rewrites them at the end of a pass when none waits)."""

LOCK_BACKOFF_MAX = 30.0
"""Longest wait, in seconds, between two tries of a held worker lock."""


class WorkerBusyError(RecUnlearnError):
    """Another worker already runs for this service."""


class Worker:
    """Processes the deletion requests of one service home."""

    def __init__(
        self, home: ServiceHome, *, stage: Stage = lambda _: None, ledger: Ledger | None = None
    ):
        self.home = home
        self.config = home.config()
        self.ledger = ledger or home.ledger(self.config)
        self.stage = stage
        self._lock_handle = None
        self._repair_job: RepairProcess | None = None
        self.settled = 0
        """Requests this worker brought to their last state (published or failed)."""
        self._deferred: set[str] = set()
        """Waiting requests that could not be quarantined beside the pending ones: they wait for the
        next repair version instead of being tried again each pass, while later requests are taken up."""
        self._unflushed_since: float | None = None
        """When the worker first found the store's files holding deleted rows' bytes."""
        self._not_due: tuple[str, float] | None = None
        """The served version whose repair was not due yet, and when that was found."""
        self._taken_up: dict[str, DeletionRequest] = {}
        """The requests this worker quarantined, by id, until a repair covers them: a repair that ran
        while later ones were taken up sets those aside again on its copy. Kept in memory only (a
        saved version lists pending ids, not what they named); a restarted worker repairs the
        served version, whose pending requests are all set aside already."""

    # locking --------------------------------------------------------------------------------------------
    def acquire(self) -> None:
        """Take the worker lock (released by the OS when the process dies, even by SIGKILL)."""
        handle = open(self.home.lock_file, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise WorkerBusyError(f"another worker is running for {self.home.path}") from None
        self._lock_handle = handle

    def wait_for_lock(
        self, stop: threading.Event, on_running: Callable[[bool], None] = lambda _: None
    ) -> bool:
        """Take the worker lock, trying again with back-off (``poll_seconds`` doubling up to
        ``LOCK_BACKOFF_MAX``) while another worker holds it; False if ``stop`` is set first."""
        delay = self.config.poll_seconds
        while not stop.is_set():
            try:
                self.acquire()
            except WorkerBusyError as exc:
                on_running(False)
                log.info("%s; trying again in %.1f s", exc, delay)
                stop.wait(delay)
                delay = min(delay * 2, LOCK_BACKOFF_MAX)
                continue
            on_running(True)
            return True
        return False

    def release(self) -> None:
        """Give up the lock, ending a repair process first (it shares the lock; its repair is lost and
        the next worker starts it again)."""
        job, self._repair_job = self._repair_job, None
        try:
            if job is not None:
                job.stop()
        finally:
            if self._lock_handle is not None:
                fcntl.flock(self._lock_handle, fcntl.LOCK_UN)
                self._lock_handle.close()
                self._lock_handle = None

    # the loop ------------------------------------------------------------------------------------------------
    def run(
        self,
        stop: threading.Event | None = None,
        drain: bool = False,
        on_running: Callable[[bool], None] = lambda _: None,
    ) -> int:
        """Process requests until ``stop`` is set (or, with ``drain``, until none is waiting or pending
        repair); returns how many were published or failed. With
        ``drain`` a held lock is a :class:`WorkerBusyError`; otherwise the worker waits for it.
        ``on_running`` hears whether it holds the lock."""
        stop = stop or threading.Event()
        if drain:
            self.acquire()
        elif not self.wait_for_lock(stop, on_running):
            return 0
        settled_before = self.settled
        try:
            while not stop.is_set():
                try:
                    done = self.run_once(background_repair=not drain)
                except RecUnlearnError:
                    raise
                except (
                    Exception
                ):  # a bug or an outage: log it, keep the requests waiting, try again
                    log.exception("worker pass failed; retrying")
                    done = 0
                    if drain:
                        raise
                if done == 0:
                    if drain:
                        break
                    stop.wait(
                        self.config.poll_seconds / 10
                        if self._repair_job
                        else self.config.poll_seconds
                    )
        finally:
            self.release()
            on_running(False)
        return self.settled - settled_before

    def run_once(self, background_repair: bool = False) -> int:
        """One pass: recover; take up a batch of waiting requests in a removal version (their data
        leaves the served model at once); then repair what is pending in a repair version. With
        ``background_repair`` the repair runs in a child process and the next passes keep taking up
        requests meanwhile. Returns the number of requests moved on."""
        self.recover()
        moved = 0
        batch = [
            r
            for r in self.ledger.waiting(self.config.batch_size + len(self._deferred))
            if r.request_id not in self._deferred
        ][: self.config.batch_size]
        if batch:
            self.stage("claimed")
            moved += self._take_up(batch)
        moved += self._repair(background_repair)
        self._flush_store()
        return moved

    def recover(self) -> None:
        """Finish a publication a crash interrupted, and delete every folder that is not served."""
        for version in self.ledger.staged_versions():
            folder = self.home.versions / version["name"]
            problems = check_version(folder)
            if problems:
                raise RecUnlearnError(
                    f"version {version['name']} is recorded as staged but its folder is not "
                    f"complete ({'; '.join(problems)}); restore it from backup"
                )
            if (
                file_sha256(folder / MANIFEST) != version["manifest_sha256"]
            ):  # files and manifest both rewritten
                raise RecUnlearnError(
                    f"version {version['name']} is recorded as staged but its {MANIFEST} is not "
                    "the one the ledger recorded (the folder was altered); restore it from backup"
                )
            self._publish(version["number"], version["name"])
        remove_unserved(self.home, self.stage)
        if self._repair_job is None:  # left by a worker that died (its child went with it)
            shutil.rmtree(self.home.repair, ignore_errors=True)
        self.stage("recovered")

    def _flush_store(self) -> None:
        """Make the deleted rows' bytes leave the store's files (:meth:`Ledger.checkpoint`), after the
        pass has served its versions, so that no removal waits for it: when no request waits, or
        once it has been put off for ``STORE_FLUSH_MAX_DELAY``. Until it runs (also after a crash, or
        while a reader holds it off: it is tried again each pass, and by a restarted worker)
        ``verify`` fails its store-file check."""
        if self.ledger.flushed:
            self._unflushed_since = None
            return
        now = time.time()
        self._unflushed_since = self._unflushed_since or now
        if self.ledger.waiting(1) and now - self._unflushed_since < STORE_FLUSH_MAX_DELAY:
            return
        if self.ledger.checkpoint():
            self._unflushed_since = None
            self.stage("store_flushed")
        else:
            log.warning(
                "the store's checkpoint was held off by a reader; deleted rows' old pages remain until it runs"
            )

    # taking up a batch: the removal version ------------------------------------------------------------
    def _take_up(self, batch: list[DeletionRecord]) -> int:
        """Quarantine the batch's requests on the served model and publish the result: a removal
        version (the parts that held the data set aside, or a single model's approximate update,
        pending repair), or a full version when nothing is left pending (an approximate method, whose
        quarantine is its forget, or requests that remove nothing). A request the method cannot
        quarantine while others are pending waits for their repair; the batch's others go on."""
        began = time.time()
        parent, model = load_current(self.home)
        self.stage("model_loaded")
        started = (began, time.time())
        masks: dict[str, np.ndarray] = {}
        for record in batch:
            try:  # ids erased by an earlier request name nothing (the API refused never-seen ids already)
                known = record.request.known_to(model.train)
                masks[record.request_id] = (
                    known.rows(model.train)
                    if known is not None
                    else np.zeros(len(model.train), bool)
                )
            except RecUnlearnError as exc:
                self.ledger.fail(record.request_id, str(exc))
                self.settled += 1
        failed = len(batch) - len(masks)
        batch = [r for r in batch if r.request_id in masks]
        if not batch:
            return failed
        train_before = model.train
        assignment = model.assignment if isinstance(model, ShardedUnlearner) else None
        held = self._parts_held(model, assignment, [masks[r.request_id] for r in batch])
        self.stage("forget_started")
        reports: dict[str, UnlearningReport] = {}
        taken: list[DeletionRecord] = []
        requests = {
            r.request_id: DeletionRequest.from_rows(
                train_before, masks[r.request_id], request_id=r.request_id
            )
            for r in batch
            if masks[r.request_id].any()
        }
        for record in batch:
            if record.request_id in requests:
                try:
                    reports[record.request_id] = model.quarantine(requests[record.request_id])
                except RecUnlearnError as exc:
                    if taken or model.pending:  # waits for the repair of what is pending
                        log.info("%s waits for the repair: %s", record.request_id, exc)
                        self._deferred.add(record.request_id)
                        continue
                    return failed + self._forget_batch(
                        batch, requests, held, model, parent, started
                    )
            taken.append(record)
        self._taken_up = {  # pending ids of an earlier worker are not needed: see _taken_up
            r: request
            for r in model.pending
            if (request := requests.get(r) or self._taken_up.get(r)) is not None
        }
        if not taken:
            return failed
        if len(taken) < len(batch):  # the rows each request removes first, the deferred left out
            held = self._parts_held(model, assignment, [masks[r.request_id] for r in taken])
        kind = "removal" if model.pending else "full"
        return failed + self._publish_taken(
            model, parent, kind, taken, reports, held, train_before, started
        )

    def _forget_batch(
        self,
        batch: list[DeletionRecord],
        requests: dict[str, DeletionRequest],
        held: list[set[str] | None],
        model: Unlearner,
        parent: str,
        started: tuple[float, float],
    ) -> int:
        """With nothing pending, a request the method cannot quarantine (its rows are in every part):
        the batch is forgotten exactly at once (``forget_many``: each part retrained once) in a full
        version; if that fails, the first request alone, failed with the method's reason if it fails
        too (the others wait for the next pass)."""
        train_before = model.train
        to_forget = [requests[r.request_id] for r in batch if r.request_id in requests]
        try:
            reports = {r.request_id: r for r in model.forget_many(to_forget)}
        except RecUnlearnError as exc:
            if len(batch) == 1:
                self.ledger.fail(batch[0].request_id, f"{model.name} could not forget it: {exc}")
                self.settled += 1
                return 1
            _, model = load_current(self.home)
            return self._forget_batch(batch[:1], requests, held[:1], model, parent, started)
        return self._publish_taken(
            model, parent, "full", batch, reports, held, train_before, started
        )

    def _publish_taken(
        self,
        model: Unlearner,
        parent: str,
        kind: str,
        taken: list[DeletionRecord],
        reports: dict[str, UnlearningReport],
        held: list[set[str] | None],
        train_before: Interactions,
        started: tuple[float, float],
    ) -> int:
        """Erase users left without rows, write, record and publish the version that takes up
        ``taken``; ``started``: when the pass began and when it had loaded the served version."""
        erased = erased_users(model.train, [r.request for r in taken])
        model.train = model.train.with_erased_users(erased)
        erased_by = first_named(train_before.users.ids[erased].tolist(), [r.request for r in taken])
        self.stage("forgotten")
        forget_done = time.time()
        number = max(self.ledger.latest_version_number(), int(parent[1:])) + 1
        ids = [r.request_id for r in taken]
        name, manifest_sha256 = stage_version(
            self.home, model, number, ids, self.stage, previous=parent
        )
        saved = time.time()
        common = {
            "method": model.name,
            "exact": model.exact,
            "version": number,
            "previous_version": parent,
            "batched_with": len(taken),
            "train_sha256_before": train_before.content_hash(),
            "train_sha256": model.train.content_hash(),
        }
        if kind == "full":
            common |= {
                "batch_changed_parts": sorted(
                    {p for report in reports.values() for p in report.changed_parts}
                ),
                "part_data_sha256": part_hashes(model),
            }
        audits = {}
        for k, record in enumerate(taken):
            report = reports.get(record.request_id)
            if kind == "full":
                own = self._audit(report, held[k])
            else:
                own = self._removal_audit(report, held[k])
            audits[record.request_id] = {
                **common,
                **own,
                "removed_exact": report.exact if report is not None else True,
                "phase": kind,
                "erased_users": len(erased_by[k]),
                "timings": {
                    "queued_s": round(started[0] - record.received_at, 4),
                    "load_s": round(started[1] - started[0], 4),
                    "forget_s": round(forget_done - started[1], 4),
                    "save_s": round(saved - forget_done, 4),
                },
            }
        self.ledger.record_staged(
            number,
            name,
            manifest_sha256,
            audits,
            kind,
            before_commit=lambda: self.stage("store_deleted"),
        )
        self.stage("applied_committed")
        self._publish(number, name)
        remove_unserved(self.home, self.stage)
        self.stage("cleaned")
        self.settled += len(taken) if kind == "full" else 0
        return len(taken)

    def _removal_audit(
        self, report: UnlearningReport | None, held: set[str] | None
    ) -> dict[str, Any]:
        """What a quarantine removed at once: counts, keyed digests of the pairs, the parts set aside
        (``held_parts``: those that held this request's rows, for the repair's audit)."""
        if report is None:
            return self._audit(None, held)
        return {
            "removed_rows": report.removed_rows,
            "removed_pair_digests": self.ledger.pair_digests(report.removed_pairs),
            "quarantined_parts": report.quarantined_parts,
            "held_parts": None if held is None else sorted(held),
            "noop": report.noop,
            "forget_seconds": round(report.seconds, 4),
            "details": report.details,
        }

    # the repair version --------------------------------------------------------------------------------
    def _repair(self, background: bool) -> int:
        """Repair the pending requests of the served version and publish the repair version. In the
        background the repair runs in a child process while later passes take up new requests;
        those are quarantined again on the repaired copy before it is published."""
        if self._repair_job is not None:
            if self._repair_job.running():
                return 0
            job, self._repair_job = self._repair_job, None
            return self._publish_repair(job.result())
        if not self.ledger.by_status().get("removed"):
            return 0
        if (
            self._not_due is not None
            and self._not_due[0] == current_name(self.home)
            and time.time() - self._not_due[1] < REPAIR_RECHECK_SECONDS
        ):
            return 0
        self.stage("repair_started")
        if background:
            assert self._lock_handle is not None, "the worker holds its lock"
            self._repair_job = RepairProcess(self.home, self._lock_handle.fileno())
            return 0
        return self._publish_repair(repair_served(self.home))

    def _publish_repair(self, done: Repaired) -> int:
        """Publish a finished repair (or note that it was not due)."""
        if done.model is None:
            self._not_due = (done.base, time.time())
            return 0
        self._not_due = None
        self.stage("repair_done")
        base, model, pending = done.base, done.model, done.pending
        removed = [
            r
            for r in self.ledger.records("removed")
            if r.removed_version is not None and r.removed_version <= int(base[1:])
        ]
        parent, served = load_current(self.home)
        if (
            parent != base
        ):  # requests taken up during the repair: set aside again on the repaired copy
            for request_id in served.pending:
                if request_id not in pending:
                    model.quarantine(self._taken_up[request_id])
            changed = np.flatnonzero(served.train.users.ids != model.train.users.ids)
            model.train = model.train.with_erased_users(changed)
        self.stage("repair_merged")
        number = max(self.ledger.latest_version_number(), int(parent[1:])) + 1
        ids = [r.request_id for r in removed]
        name, manifest_sha256 = stage_version(
            self.home, model, number, ids, self.stage, previous=parent
        )
        saved = time.time()
        parts = list(done.parts)
        if (
            isinstance(model, ShardedUnlearner)
            and model.aggregator.depends_on_shards
            and any(p.action == "retrained" for p in parts)
        ):  # refitted on every remaining row (RecEraser's attention)
            parts.append(
                PartChange(
                    part="aggregator",
                    action="retrained",
                    data_hash_after=model.train.content_hash(),
                )
            )
        common = {
            "version": number,
            "repair_previous_version": parent,
            "repaired_with": len(ids),
            "batch_changed_parts": [p.part for p in parts if p.action != "unchanged"],
            "part_data_sha256": part_hashes(model),
            "train_sha256": model.train.content_hash(),
            "repair_timings": {
                "repair_s": round(done.finished - done.started, 4),
                "save_s": round(saved - done.finished, 4),
            },
        }
        audits = {}
        for record in removed:
            held = (record.audit or {}).get("held_parts")
            own, scope = parts, "batch" if len(ids) > 1 else "request"
            if held is not None:
                own = [p for p in parts if p.part in held or (p.part == "aggregator" and held)]
                scope = "request"
            if record.request_id not in pending:  # it removed nothing the repair had to retrain
                own, scope = [], "request"
            audits[record.request_id] = {
                **common,
                "parts": [p.model_dump() for p in own],
                "changed_parts": [p.part for p in own if p.action != "unchanged"],
                "parts_scope": scope,
            }
        self.ledger.record_staged(
            number,
            name,
            manifest_sha256,
            audits,
            "repair",
            before_commit=lambda: self.stage("store_deleted"),
        )
        self._deferred.clear()
        for request_id in pending:
            self._taken_up.pop(request_id, None)
        self.stage("applied_committed")
        self._publish(number, name)
        remove_unserved(self.home, self.stage)
        self.stage("cleaned")
        self.settled += len(ids)
        return len(ids)

    def _publish(self, number: int, name: str) -> None:
        if current_name(self.home) != name:
            point_to(self.home, name, self.stage)
        self.ledger.record_published(number)
        self.stage("published_committed")

    @staticmethod
    def _parts_held(
        model: Unlearner, assignment: np.ndarray | None, masks: list[np.ndarray]
    ) -> list[set[str] | None]:
        """Per request (in batch order), the parts that held the rows it removes first (a row two
        requests name is the first's, as in ``forget_many``): a sharded method's shards, and the
        aggregator where one is fitted on every row. None for other methods: they report no parts per row.
        ``assignment``: the shard of every row before the batch."""
        if not isinstance(model, ShardedUnlearner) or assignment is None:
            return [None] * len(masks)
        taken, held = np.zeros(len(assignment), bool), []
        for mask in masks:
            own = mask & ~taken
            taken |= own
            shards = {f"shard-{k}" for k in np.unique(assignment[own]).tolist()}
            held.append(
                shards
                | ({"aggregator"} if shards and model.aggregator.depends_on_shards else set())
            )
        return held

    def _audit(self, report: UnlearningReport | None, held: set[str] | None) -> dict[str, Any]:
        """What the request removed (counts, and the pairs only as keyed digests: the ledger keeps proof
        of the deletion, not a copy of the deleted history) and which parts it changed. ``parts_scope``
        says whose the parts are: 'request' (those that held its rows) or 'batch' (a method that
        retrained the batch together and reports its parts for the whole batch only)."""
        if report is None:
            return {
                "removed_rows": 0,
                "removed_pair_digests": [],
                "parts": [],
                "changed_parts": [],
                "parts_scope": "request",
                "noop": True,
                "details": {"reason": "nothing the request names is in the training data"},
            }
        parts, scope = (
            report.parts,
            "batch" if report.details.get("batched_with", 1) > 1 else "request",
        )
        if held is not None:
            parts, scope = [p for p in report.parts if p.part in held], "request"
        return {
            "removed_rows": report.removed_rows,
            "removed_pair_digests": self.ledger.pair_digests(report.removed_pairs),
            "parts": [p.model_dump() for p in parts],
            "changed_parts": [p.part for p in parts if p.action != "unchanged"],
            "parts_scope": scope,
            "noop": report.noop,
            "forget_seconds": round(report.seconds, 4),
            "details": report.details,
        }


def first_named(erased: list[str], requests: list[DeletionRequest]) -> list[set[str]]:
    """Per request, the erased users it is the first of the batch to name: each erased user is
    counted once, in the audit of the request that asked first."""
    left, claimed = set(erased), []
    for request in requests:
        mine = left & set(request.named_users)
        left -= mine
        claimed.append(mine)
    return claimed


def erased_users(data: Interactions, requests: list[DeletionRequest]) -> np.ndarray:
    """Users the requests name (whole, or through a pair) who have no row left in ``data``: their ids
    leave the served version's vocabulary (a served model keeps no id of a user deleted whole)."""
    vocabulary = data.users
    named = sorted({u for r in requests for u in r.named_users if u in vocabulary})
    if not named:
        return np.zeros(0, np.int64)
    indices = vocabulary.index(named)
    return indices[np.bincount(data.user, minlength=len(vocabulary))[indices] == 0]


def run_in_thread(
    home: ServiceHome,
    stop: threading.Event,
    on_error: Callable[[BaseException], None],
    on_running: Callable[[bool], None],
) -> threading.Thread:
    """Run a worker beside the HTTP server (``recunlearn serve --worker``); ``on_running`` hears
    whether it holds the lock, ``on_error`` why it stopped."""

    def target() -> None:
        try:
            Worker(home).run(stop, on_running=on_running)
        except BaseException as exc:  # reported to the server, which shows it on /v1/health
            on_error(exc)

    thread = threading.Thread(target=target, name="recunlearn-worker", daemon=True)
    thread.start()
    return thread
