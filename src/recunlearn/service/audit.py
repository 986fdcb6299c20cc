"""``recunlearn verify REQUEST_ID``: evidence that a deletion was carried out, checked now.

The audit record (written by the worker) says what was removed and how; verification re-derives what
it can instead of trusting it: it looks for the named data in the store, in the served version's
training tables, in every data file under the service home, checks the served version against its
manifest and each part's data hash, and (exact methods) retrains the parts the request changed from
scratch and compares them bitwise with the served ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from pydantic import BaseModel

from recunlearn.data.deletion import DeletionRequest
from recunlearn.data.interactions import Interactions
from recunlearn.errors import RecUnlearnError
from recunlearn.service.config import ServiceHome
from recunlearn.service.store import DeletionRecord, Ledger
from recunlearn.service.versions import check_version, current_name, load_version, part_hashes, read_manifest
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
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)


def _remaining(request: DeletionRequest, data: Interactions) -> int:
    """Rows of ``data`` the request names (ids the table has never seen name no rows)."""
    known = request.known_to(data)
    return int(known.rows(data).sum()) if known is not None else 0


def _data_files(home: ServiceHome) -> list[Path]:
    return sorted(p for p in home.path.rglob("*.npz") if p.is_file())


def _same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a)


def _rebuild_check(model: Unlearner, parts: list[str]) -> Check:
    """Retrain the given parts from scratch on their current data; they must equal the served ones bitwise."""
    if isinstance(model, ShardedUnlearner):
        differing = []
        for part in parts:
            if part == "aggregator":  # refitted from its seed on the served shards and the remaining rows
                fresh_aggregator = build_aggregator(model.config.aggregator)
                fresh_aggregator.fit(model.models, model.train, model.valid, range(model.config.n_shards))
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
        return Check(name="exact retraining", ok=not differing,
                     detail=f"{detail}: " + (f"{differing} differ from the served parameters" if differing
                                             else "identical parameters"))
    if hasattr(model, "model") and hasattr(model.config, "model"):
        fresh = fit_model(model.config.model, model.train, model.valid, model.config.train).model.state_dict()
        same = _same_state(fresh, model.model.state_dict())
        return Check(name="exact retraining", ok=same, detail="retrained the model from scratch: "
                     + ("identical parameters" if same else "parameters differ from the served model"))
    return Check(name="exact retraining", ok=True, detail=f"{model.name}: no rebuild recipe; checked by its "
                 "own exactness tests")


def verify_request(home: ServiceHome, request_id: str, retrain: bool = True) -> Verification:
    """Check a request's deletion now (see the module docstring)."""
    ledger = Ledger(home.database_url())
    try:
        record = ledger.get(request_id)
        request = record.request
        checks = [Check(name="status", ok=record.status == "published",
                        detail=f"{record.status}" + (f": {record.error}" if record.error else "")
                        + (f" in version {record.version}" if record.version else ""))]
        left = ledger.matching_rows(request)
        checks.append(Check(name="store", ok=left == 0, detail=f"{left} stored interaction(s) match the request"))
        flushed = ledger.checkpoint()
        checks.append(Check(name="store file", ok=flushed,
                            detail="checkpointed: deleted rows' pages are overwritten in the database file" if flushed
                            else "a reader holds the store open, so the database file may still hold deleted "
                                 "rows' old pages; run verify again when it is idle"))
    finally:
        ledger.close()
    served = current_name(home)
    if record.status == "published" and served is not None:
        checks += _model_checks(home, served, record, retrain)
    return Verification(request_id=request_id, status=record.status, version=record.version,
                        served_version=served, checks=checks)


def _model_checks(home: ServiceHome, served: str, record: DeletionRecord, retrain: bool) -> list[Check]:
    """Checks of the served version and of every data file under the home."""
    request = record.request
    checks = []
    problems = check_version(home.versions / served)
    checks.append(Check(name="served version complete", ok=not problems,
                        detail="; ".join(problems) or f"{served}: every file matches the manifest"))
    if problems:
        return checks
    newer = int(served[1:]) >= (record.version or 0)
    checks.append(Check(name="served version includes the deletion", ok=newer,
                        detail=f"served {served}, request published in version {record.version}"))
    others = sorted(p.name for p in home.versions.iterdir() if p.name != served)
    checks.append(Check(name="no other versions", ok=not others,
                        detail=f"left over: {others}" if others else "only the served version is on disk"))
    traces = {str(path.relative_to(home.path)): _remaining(request, Interactions.load(path))
              for path in _data_files(home)}
    found = {path: n for path, n in traces.items() if n}
    checks.append(Check(name="data files", ok=not found,
                        detail=f"rows the request names remain in {found}" if found
                        else f"none of {len(traces)} data file(s) under the home holds a row the request names"))
    model = load_version(home, served)
    kept = [u for u in request.users if u in model.train.users]
    checks.append(Check(name="users erased", ok=not kept,
                        detail=f"the served vocabulary still names {kept[:5]}" if kept
                        else f"none of the {len(request.users)} user(s) deleted whole is named by the served version"))
    manifest = read_manifest(home.versions / served)
    actual = part_hashes(model)
    mismatched = sorted(p for p in actual if manifest["parts"].get(p) != actual[p])
    if isinstance(model, ShardedUnlearner):
        mismatched += sorted(f"shard-{k}" for k, info in enumerate(model.shard_info)
                             if info.get("data_hash") not in (None, actual[f"shard-{k}"]))
    checks.append(Check(name="part manifests", ok=not mismatched,
                        detail=f"data hashes differ for {sorted(set(mismatched))}" if mismatched
                        else f"{len(actual)} part(s): recorded data hashes match the data they hold"))
    forgotten = json.loads((home.versions / served / "unlearner.json").read_text()).get("forgotten", [])
    checks.append(Check(name="no forget log", ok=not forgotten,
                        detail=f"the served version lists {len(forgotten)} forgotten pair(s) or sample(s)" if forgotten
                        else "the served version keeps no list of what was forgotten (the ledger does)"))
    if retrain and model.exact:
        changed = (record.audit or {}).get("changed_parts", [])
        unknown = [p for p in changed if p not in actual]
        try:
            checks.append(_rebuild_check(model, [p for p in changed if p in actual]) if not unknown else
                          Check(name="exact retraining", ok=False,
                                detail=f"changed part(s) {unknown} have no data hash in the served version to check"))
        except RecUnlearnError as exc:
            checks.append(Check(name="exact retraining", ok=False, detail=str(exc)))
    elif not model.exact:
        distance = (record.audit or {}).get("details", {})
        checks.append(Check(name="exact retraining", ok=True,
                            detail=f"approximate method {model.name}: not bitwise checkable; its report: {distance}"))
    return checks


def describe(result: Verification) -> str:
    lines = [f"request {result.request_id}: {result.status}, served version {result.served_version}"]
    lines += [f"  [{'ok' if c.ok else 'FAIL'}] {c.name}: {c.detail}" for c in result.checks]
    lines.append("verified" if result.ok else "NOT verified")
    return "\n".join(lines)
