"""``recunlearn verify REQUEST_ID``: evidence that a deletion was carried out, checked now.

The audit record (written by the worker) says what was removed and how; verification re-derives what
it can instead of trusting it: it looks for the named data (by the request's keyed digests: the ledger
keeps no ids of an applied request) in the store, in the served version's training tables, in every
data file under the service home, checks the served version against its
manifest, the manifest against the ledger's record of that version, and each part's data hash, and
(exact methods) retrains the parts the request changed from scratch and compares them bitwise with
the served ones.

One module because every check reads the same ledger record and version manifest; split, each
part would re-derive them.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel

from recunlearn.data.interactions import Interactions
from recunlearn.errors import RecUnlearnError
from recunlearn.service.config import ServiceHome
from recunlearn.service.store import DeletionRecord, Proof
from recunlearn.service.versions import (
    MANIFEST,
    PREVIOUS_MANIFEST,
    STAGING_PREFIX,
    VersionError,
    check_version,
    current_name,
    file_sha256,
    load_version,
    part_hashes,
    part_weights,
    read_manifest,
)
from recunlearn.train.loop import fit_model
from recunlearn.unlearn.aggregate import build_aggregator
from recunlearn.unlearn.base import Unlearner
from recunlearn.unlearn.executors import train_shard
from recunlearn.unlearn.sharded import ShardedUnlearner


class Check(BaseModel):
    name: str
    ok: bool
    detail: str


class Verification(BaseModel):
    """The outcome of every check; ``ok`` only when all passed."""

    request_id: str
    status: str
    version: int | None
    served_version: str | None
    parts_scope: str | None = None
    """Whose the audit's changed parts are: 'request' (the parts that held its rows) or 'batch'."""
    checks: list[Check]
    notes: list[str] = []
    """What the checks cannot see (e.g. PostgreSQL's write-ahead log); they do not make ``ok`` false."""

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)


def _remaining(key: bytes, proof: Proof, data: Interactions) -> int:
    """Rows of ``data`` the request names."""
    return int(
        proof.matches(
            key, data.users.ids[data.user].tolist(), data.items.ids[data.item].tolist()
        ).sum()
    )


def _same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a)


def _rebuild_check(model: Unlearner, parts: list[str]) -> Check:
    """Retrain the given parts from scratch on their current data; they must equal the served ones bitwise."""
    if isinstance(model, ShardedUnlearner):
        differing = []
        for part in parts:
            if (
                part == "aggregator"
            ):  # refitted from its seed on the served shards and the remaining rows
                fresh_aggregator = build_aggregator(model.config.aggregator)
                fresh_aggregator.fit(
                    model.models,
                    model.train,
                    model.valid,
                    range(model.config.n_shards),
                    model.assignment,
                )
                if not _same_state(fresh_aggregator.tensors(), model.aggregator.tensors()):
                    differing.append(part)
                continue
            shard = int(part.split("-")[1])
            if model.models[shard] is None:
                continue
            fresh = train_shard(model.shard_job(shard)).state
            if not _same_state(fresh, model.models[shard].state_dict()):
                differing.append(part)
        detail = f"retrained {', '.join(parts) or 'no part'} from scratch"
        return Check(
            name="exact retraining",
            ok=not differing,
            detail=f"{detail}: "
            + (
                f"{differing} differ from the served parameters"
                if differing
                else "identical parameters"
            ),
        )
    if hasattr(model, "model") and hasattr(model.config, "model"):
        fresh = fit_model(
            model.config.model, model.train, model.valid, model.config.train
        ).model.state_dict()
        same = _same_state(fresh, model.model.state_dict())
        return Check(
            name="exact retraining",
            ok=same,
            detail="retrained the model from scratch: "
            + ("identical parameters" if same else "parameters differ from the served model"),
        )
    return Check(
        name="exact retraining",
        ok=True,
        detail=f"{model.name}: no rebuild recipe; checked by its own exactness tests",
    )


def verify_request(
    home: ServiceHome,
    request_id: str,
    retrain: bool = True,
    pairs: tuple[tuple[str, str], ...] = (),
) -> Verification:
    """Check a request's deletion now (see the module docstring); ``pairs``: (user, item) pairs the
    audit must list as removed (checked against its keyed digests)."""
    ledger = home.ledger()
    try:
        record = ledger.get(request_id)
        key = ledger.key
        checks = [
            Check(
                name="status",
                ok=record.status in ("removed", "repaired", "published"),
                detail=f"{record.status}"
                + (f": {record.error}" if record.error else "")
                + (f" in version {record.version}" if record.version else ""),
            )
        ]
        for user, item in pairs:
            removed = ledger.was_removed(record, user, item)
            checks.append(
                Check(
                    name="pair removed",
                    ok=removed,
                    detail=f"({user!r}, {item!r}) is "
                    + ("" if removed else "not ")
                    + "among the pairs the audit lists as removed",
                )
            )
        left = ledger.matching_digests(record.proof)
        checks.append(
            Check(
                name="store", ok=left == 0, detail=f"{left} stored interaction(s) match the request"
            )
        )
        flushed = ledger.checkpoint()
        sqlite = ledger.engine.dialect.name == "sqlite"
        checks.append(
            Check(
                name="store file",
                ok=flushed,
                detail=(
                    (
                        "checkpointed: deleted rows' pages are overwritten in the database file and its WAL is truncated"
                        if sqlite
                        else "rewrote the interactions and requests tables (VACUUM FULL): their files hold no "
                        "deleted row"
                    )
                    if flushed
                    else (
                        "a reader holds the store open, so the database file may still hold deleted rows' old pages"
                        if sqlite
                        else "a reader held the tables' lock, so their files may still hold deleted rows"
                    )
                    + "; run verify again when it is idle"
                ),
            )
        )
        retention = ledger.log_retention()
        notes = [f"store log: {retention}"] if retention else []
        served = current_name(home)
        number = _folder_number(served) if served is not None else None
        served_row = ledger.version(number) if number is not None else None
        request_row = ledger.version(record.version) if record.version is not None else None
        removal_row = (
            ledger.version(record.removed_version) if record.removed_version is not None else None
        )
        previous_row = None
        if removal_row is not None and record.status in ("removed", "repaired") and served:
            try:
                previous = read_manifest(home.versions / served).get("previous")
            except VersionError:  # the removal check reports the incomplete folder
                previous = None
            previous_number = _folder_number(previous) if previous else None
            previous_row = ledger.version(previous_number) if previous_number else None
    finally:
        ledger.close()
    if record.status in ("removed", "repaired") and served is not None:
        try:
            _removal_checks(checks, home, key, served, number, record, previous_row)
        except Exception as exc:  # a failed check with its reason, not a traceback
            checks.append(
                Check(
                    name="removal version",
                    ok=False,
                    detail=f"checking {served} failed ({type(exc).__name__}: {exc})",
                )
            )
    if record.status == "published" and served is not None:
        try:
            _model_checks(checks, home, key, served, record, served_row, request_row, retrain)
        except (
            Exception
        ) as exc:  # a check that cannot finish is a failed check with its reason, not a traceback
            moved = current_name(home) != served
            checks.append(
                Check(
                    name="served version",
                    ok=False,
                    detail=f"checking {served} failed ({type(exc).__name__}: {exc})"
                    + (
                        "; the worker published another version meanwhile: run verify again"
                        if moved
                        else ""
                    ),
                )
            )
    return Verification(
        request_id=request_id,
        status=record.status,
        version=record.version,
        served_version=served,
        parts_scope=_parts_scope(record.audit) if record.audit else None,
        checks=checks,
        notes=notes,
    )


_VERSION_FOLDER = re.compile(rf"^(?:{re.escape(STAGING_PREFIX)})?v(\d+)(?:-[0-9a-f]+)?$")


def _folder_number(name: str) -> int | None:
    """The version number of a version or staging folder's name (None: not a version folder)."""
    match = _VERSION_FOLDER.match(name)
    return int(match.group(1)) if match else None


def _removal_checks(
    checks: list[Check],
    home: ServiceHome,
    key: bytes,
    served: str,
    number: int | None,
    record: DeletionRecord,
    previous_row: dict[str, Any] | None,
) -> None:
    """The removal phase's claim, while the repair is pending: the served version holds none of the
    request's rows; and when it is the request's removal version, it loads no part that held them
    and its other parts are bitwise the previous version's (whose manifest the removal version keeps
    a copy of, checked against the ledger's sha256 of it)."""
    folder = home.versions / served
    problems = check_version(folder)
    if problems:
        checks.append(Check(name="served version complete", ok=False, detail="; ".join(problems)))
        return
    model = Unlearner.load(folder)
    left = _remaining(key, record.proof, model.train)
    checks.append(
        Check(
            name="served model's data",
            ok=left == 0,
            detail=f"{left} training row(s) of {served} match the request",
        )
    )
    audit = record.audit or {}
    held = audit.get("held_parts")
    if number != record.removed_version or held is None:
        checks.append(
            Check(
                name="removal version",
                ok=True,
                detail=f"{served} is served, not the removal version {record.removed_version}"
                if number != record.removed_version
                else f"{model.name} removes without setting parts aside "
                f"({'exact' if record.removed_exact else 'approximate'}); the repair follows",
            )
        )
        return
    manifest = read_manifest(folder)
    weights = manifest.get("part_weights", {})
    loaded = part_weights(model)
    previous_file = folder / PREVIOUS_MANIFEST
    problems = []
    loads = sorted(p for p in held if loaded.get(p) is not None)
    if loads:
        problems.append(f"{served} loads part(s) {loads} that held the request's rows")
    if loaded != weights:
        problems.append(f"{served}'s parts are not the ones its manifest records")
    if previous_row is None or not previous_file.is_file():
        problems.append(f"{served} keeps no previous manifest the ledger recorded")
    elif file_sha256(previous_file) != previous_row["manifest_sha256"]:
        problems.append(
            f"{served}'s copy of {previous_row['name']}'s manifest is not the recorded one"
        )
    else:
        before = json.loads(previous_file.read_text()).get("part_weights", {})
        differ = sorted(
            p for p, digest in loaded.items() if digest is not None and before.get(p) != digest
        )
        if differ:
            problems.append(f"part(s) {differ} differ from {previous_row['name']}'s")
    kept = sorted(p for p, digest in loaded.items() if digest is not None)
    checks.append(
        Check(
            name="removal version",
            ok=not problems,
            detail="; ".join(problems)
            or f"{served} loads none of {held}; {kept} are bitwise {previous_row['name']}'s",
        )
    )


def _ledger_check(
    home: ServiceHome,
    served: str,
    record: DeletionRecord,
    served_row: dict[str, Any] | None,
    request_row: dict[str, Any] | None,
) -> Check:
    """The served folder is the one the ledger recorded (the sha256 of its manifest, which holds every
    file's sha256), so a folder whose files and manifest were both rewritten is caught; the ledger's
    version of the request lists it."""
    problems = []
    if served_row is None:
        problems.append(f"the ledger records no version {served}")
    else:
        actual = file_sha256(home.versions / served / MANIFEST)
        if actual != served_row["manifest_sha256"]:
            problems.append(
                f"{served}'s {MANIFEST} (sha256 {actual[:12]}) is not the one the ledger recorded "
                f"({served_row['manifest_sha256'][:12]}): the folder was rewritten after it was staged"
            )
        if served_row["status"] not in (
            "published",
            "staged",
        ):  # staged: the worker is between pointer and ledger
            problems.append(
                f"{served} is {served_row['status']} in the ledger, not the published version"
            )
    if request_row is None:
        problems.append(f"the ledger records no version {record.version}")
    elif record.request_id not in json.loads(request_row["request_ids"]) or request_row[
        "status"
    ] not in ("published", "retired"):
        problems.append(
            f"version {record.version} is {request_row['status']} in the ledger and lists "
            f"{json.loads(request_row['request_ids'])[:5]}, not this published request"
        )
    return Check(
        name="ledger's version record",
        ok=not problems,
        detail="; ".join(problems)
        or f"{served}'s manifest is the one the ledger recorded; version "
        f"{record.version} lists the request",
    )


def _others_check(home: ServiceHome, served: str, record: DeletionRecord) -> Check:
    """Version folders older than the request's version could hold its data; the served one, newer ones
    and the worker's staging folders for them were made from a model without it (the data files check
    still reads them)."""
    others = sorted(
        p.name
        for p in home.versions.iterdir()
        if p.name != served and (_folder_number(p.name) or 0) < (record.version or 0)
    )
    return Check(
        name="no other versions",
        ok=not others,
        detail=f"left over: {others}"
        if others
        else f"no version older than {record.version} is on disk besides the served one",
    )


def _data_files_check(home: ServiceHome, key: bytes, proof: Proof) -> Check:
    """Every ``.npz`` under the home, read now. The worker writes and deletes version folders meanwhile:
    a file deleted since the listing holds nothing any more; one in a staging folder or the repair
    folder that does not read is being written (retry); any other unreadable file fails the check, as
    it could hold the rows."""
    found, busy, unreadable, read = {}, [], [], 0
    for folder, _dirs, files in os.walk(home.path):  # os.walk skips folders deleted while it walks
        for path in sorted(Path(folder) / f for f in files if f.endswith(".npz")):
            name = str(path.relative_to(home.path))
            try:
                rows = _remaining(key, proof, Interactions.load(path))
            except FileNotFoundError:
                continue
            except Exception as exc:  # whatever a half-written or damaged table makes numpy raise
                if (
                    path.parent.parent == home.versions
                    and path.parent.name.startswith(STAGING_PREFIX)
                ) or home.repair in path.parents:  # the repair process writes there
                    busy.append(name)
                else:
                    unreadable.append(f"{name} ({type(exc).__name__}: {exc})")
                continue
            read += 1
            if rows:
                found[name] = rows
    problems = (
        ([f"rows the request names remain in {found}"] if found else [])
        + ([f"cannot read {unreadable}"] if unreadable else [])
        + (
            [f"busy, retry: the worker is writing {busy}; run verify again when it has published"]
            if busy
            else []
        )
    )
    return Check(
        name="data files",
        ok=not problems,
        detail="; ".join(problems)
        or f"none of {read} data file(s) under the home holds a row the request names",
    )


def _model_checks(
    checks: list[Check],
    home: ServiceHome,
    key: bytes,
    served: str,
    record: DeletionRecord,
    served_row: dict[str, Any] | None,
    request_row: dict[str, Any] | None,
    retrain: bool,
) -> None:
    """Append the checks of the served version and of every data file under the home to ``checks``."""
    proof = record.proof
    problems = check_version(home.versions / served)
    checks.append(
        Check(
            name="served version complete",
            ok=not problems,
            detail="; ".join(problems) or f"{served}: every file matches the manifest",
        )
    )
    if problems:
        return
    checks.append(_ledger_check(home, served, record, served_row, request_row))
    number = _folder_number(served)
    newer = number is not None and number >= (record.version or 0)
    checks.append(
        Check(
            name="served version includes the deletion",
            ok=newer,
            detail=f"served {served}, request published in version {record.version}",
        )
    )
    checks.append(_others_check(home, served, record))
    checks.append(_data_files_check(home, key, proof))
    try:
        model = load_version(home, served)
    except (
        Exception
    ) as exc:  # files that match the manifest but not each other (weights of another version)
        checks.append(
            Check(
                name="served version loads",
                ok=False,
                detail=f"{served} does not load ({type(exc).__name__}: {exc})",
            )
        )
        return
    vocabulary = model.train.users
    named = proof.named_users_in(key, vocabulary.ids.tolist())
    placeholders = vocabulary.placeholders(named)  # an old request may name one: nobody
    kept = [u for u in named if u not in placeholders]
    checks.append(
        Check(
            name="users erased",
            ok=not kept,
            detail=f"the served vocabulary still names {kept[:5]}"
            if kept
            else f"none of the {len(proof.users)} user(s) deleted whole is named by the served version",
        )
    )
    manifest = read_manifest(home.versions / served)
    actual = part_hashes(model)
    mismatched = sorted(p for p in actual if manifest["parts"].get(p) != actual[p])
    if isinstance(model, ShardedUnlearner):
        # a shard set aside serves nothing and its recorded hash is of its rows before the quarantine
        aside = set(model.quarantined_parts)
        mismatched += sorted(
            f"shard-{k}"
            for k, info in enumerate(model.shard_info)
            if f"shard-{k}" not in aside
            and (
                info.get("data_hash") not in (None, actual[f"shard-{k}"])
                or (model.models[k] is None and len(model.shard_data(k)) > 0)
            )
        )
    checks.append(
        Check(
            name="part manifests",
            ok=not mismatched,
            detail=f"data hashes differ for {sorted(set(mismatched))}"
            if mismatched
            else f"{len(actual)} part(s): recorded data hashes match the data they hold",
        )
    )
    forgotten = json.loads((home.versions / served / "unlearner.json").read_text()).get(
        "forgotten", []
    )
    checks.append(
        Check(
            name="no forget log",
            ok=not forgotten,
            detail=f"the served version lists {len(forgotten)} forgotten pair(s) or sample(s)"
            if forgotten
            else "the served version keeps no list of what was forgotten (the ledger does)",
        )
    )
    audit = record.audit or {}
    if retrain and model.exact:
        changed = audit.get("changed_parts", [])
        unknown = [p for p in changed if p not in actual]
        try:
            check = (
                _rebuild_check(model, [p for p in changed if p in actual])
                if not unknown
                else Check(
                    name="exact retraining",
                    ok=False,
                    detail=f"changed part(s) {unknown} have no data hash in the served version to check",
                )
            )
        except RecUnlearnError as exc:
            check = Check(name="exact retraining", ok=False, detail=str(exc))
        checks.append(
            check.model_copy(update={"detail": f"{check.detail} ({_describe_scope(audit)})"})
        )
    elif not model.exact:
        checks.append(
            Check(
                name="exact retraining",
                ok=True,
                detail=f"approximate method {model.name}: not bitwise checkable; its report: "
                f"{audit.get('details', {})}",
            )
        )


def _parts_scope(audit: dict[str, Any]) -> str:
    """Whose the audit's changed parts are, 'request' or 'batch' (audits written before ``parts_scope``
    was recorded list the batch's parts when the request was batched)."""
    return audit.get("parts_scope", "batch" if audit.get("batched_with", 1) > 1 else "request")


def _describe_scope(audit: dict[str, Any]) -> str:
    return (
        "changed parts: those that held this request's rows"
        if _parts_scope(audit) == "request"
        else f"changed parts: those of its whole batch of {audit.get('batched_with')} request(s)"
    )


def describe(result: Verification) -> str:
    lines = [
        f"request {result.request_id}: {result.status}, served version {result.served_version}"
        + (f", parts audited per {result.parts_scope}" if result.parts_scope else "")
    ]
    lines += [f"  [{'ok' if c.ok else 'FAIL'}] {c.name}: {c.detail}" for c in result.checks]
    lines += [f"  [note] {note}" for note in result.notes]
    lines.append("verified" if result.ok else "NOT verified")
    return "\n".join(lines)
