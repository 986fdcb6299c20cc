"""``verify`` passes after a real deletion and fails on each kind of trace left behind."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from sqlalchemy import update
from typer.testing import CliRunner

from recunlearn.cli import _load_commands
from recunlearn.cli._app import app
from recunlearn.data.deletion import DeletionRequest
from recunlearn.data.interactions import Interactions
from recunlearn.errors import ConfigError
from recunlearn.service.audit import verify_request
from recunlearn.service.config import ServiceHome
from recunlearn.service.initialize import init_service
from recunlearn.service.store import Ledger, versions
from recunlearn.service.versions import (
    current_name,
    file_sha256,
    load_current,
    part_weights,
    read_manifest,
)
from recunlearn.service.worker import Worker
from recunlearn.testing import FAST_TRAIN
from tests.conftest import make_tiny


def _delete(home: ServiceHome, request: DeletionRequest) -> None:
    ledger = home.ledger()
    ledger.submit(request)
    ledger.close()
    Worker(home).run(drain=True)


def _failed(home: ServiceHome, request_id: str, retrain: bool = False) -> set[str]:
    return {c.name for c in verify_request(home, request_id, retrain=retrain).checks if not c.ok}


def test_verify_passes_then_catches_copies_of_the_deleted_data(service, tmp_path):
    home = service.home
    old = tmp_path / "old"
    shutil.copytree(home.versions / current_name(home), old)  # the version still holding u7's rows
    _delete(home, DeletionRequest(request_id="u7", users=["u7"]))
    assert verify_request(home, "u7", retrain=True).ok
    name, model = load_current(home)
    assert "u7" not in model.train.users and len(model.train.users) == len(make_tiny().users), (
        "erased, same shape"
    )
    shutil.copytree(home.versions / name, tmp_path / "erased")
    model.train = model.train._replace(
        users=Interactions.load(old / "train.npz").users
    )  # u7 named again
    model.save(home.versions / name)
    _resign(home, name)
    assert _failed(home, "u7") == {"users erased"}
    shutil.rmtree(home.versions / name)
    shutil.copytree(tmp_path / "erased", home.versions / name)
    _resign(home, name)  # the ledger holds the forged manifest's sha256 now

    cache = home.path / "cache"
    shutil.copytree(old, cache)
    assert _failed(home, "u7") == {"data files"}, "a stale copy under the home is a trace"
    shutil.rmtree(cache)

    served = home.versions / current_name(home)
    shutil.copytree(old, home.versions / "v000001")
    assert _failed(home, "u7") == {"no other versions", "data files"}
    shutil.rmtree(home.versions / "v000001")

    ledger = home.ledger()
    ledger.add_interactions(
        make_tiny().take(np.flatnonzero(make_tiny().to_frame().user == "u7")[:1])
    )
    ledger.close()
    assert _failed(home, "u7") == {"store"}
    with home.ledger().write() as connection:
        connection.exec_driver_sql("DELETE FROM interactions WHERE user_id = 'u7'")

    (served / "weights.safetensors").write_bytes(
        (served / "weights.safetensors").read_bytes()[:-8] + b"\0" * 8
    )
    assert _failed(home, "u7") == {"served version complete"}


def _resign(home: ServiceHome, name: str, in_ledger: bool = True) -> None:
    """Rewrite the folder's manifest to match its files; ``in_ledger``: record its new sha256 in the
    ledger too (a forger who can also write the ledger), so only the other checks can tell."""
    manifest = read_manifest(home.versions / name)
    manifest["files"] = {f: file_sha256(home.versions / name / f) for f in manifest["files"]}
    (home.versions / name / "manifest.json").write_text(json.dumps(manifest))
    if in_ledger:
        with home.ledger().write() as connection:
            connection.execute(
                update(versions)
                .where(versions.c.name == name)
                .values(manifest_sha256=file_sha256(home.versions / name / "manifest.json"))
            )


def test_verify_catches_a_rewritten_version_and_one_that_does_not_load(service):
    """A folder whose files and manifest were rewritten together matches itself but not the ledger's
    record of it; weights that do not load are a failed check, not a traceback."""
    home = service.home
    old_weights = (home.versions / "v000001" / "weights.safetensors").read_bytes()
    _delete(home, DeletionRequest(request_id="u7", users=["u7"]))
    name = current_name(home)
    _resign(home, name, in_ledger=False)
    assert _failed(home, "u7") == {"ledger's version record"}
    (home.versions / name / "weights.safetensors").write_bytes(
        old_weights
    )  # the model trained with u7's rows
    _resign(home, name, in_ledger=False)
    assert _failed(home, "u7") == {"ledger's version record", "served version loads"}
    _resign(home, name)
    result = verify_request(home, "u7", retrain=True)
    assert {c.name for c in result.checks if not c.ok} == {"served version loads"} and not result.ok


def test_verify_passes_while_the_worker_handles_a_later_request(service):
    """The worker's staging folder, its new version and the version it just retired are not left-overs
    of an earlier request; a staging table that does not read yet is 'busy', not a crash."""
    home = service.home
    _delete(home, DeletionRequest(request_id="u7", users=["u7"]))
    ledger = home.ledger()
    ledger.submit(DeletionRequest(request_id="u8", users=["u8"]))
    ledger.close()
    seen = {}

    def stage(name: str) -> None:
        if name in (
            "saved",
            "manifest_written",
            "version_renamed",
            "applied_committed",
            "pointer_renamed",
        ):
            seen[name] = _failed(home, "u7")

    Worker(home, stage=stage).run(drain=True)
    assert len(seen) == 5 and all(not failed for failed in seen.values()), seen
    staging = home.versions / ".staging-v000004-0123abcd"
    staging.mkdir()
    (staging / "train.npz").write_bytes(b"PK\x03\x04 half written")
    checks = {c.name: c for c in verify_request(home, "u7", retrain=False).checks}
    assert {n for n, c in checks.items() if not c.ok} == {"data files"} and "busy, retry" in checks[
        "data files"
    ].detail


def test_verify_fails_while_a_reader_holds_off_the_store_checkpoint(service, monkeypatch):
    home = service.home
    _delete(home, DeletionRequest(request_id="u7", users=["u7"]))
    assert "store file" in {c.name for c in verify_request(home, "u7", retrain=False).checks}
    monkeypatch.setattr(Ledger, "checkpoint", lambda self: False)
    assert _failed(home, "u7") == {"store file"}


def test_served_versions_keep_no_list_of_what_was_forgotten(service):
    home = service.home
    _delete(home, DeletionRequest(request_id="p", pairs=[("u1", "i2"), ("u3", "i0")]))
    name = current_name(home)
    document = json.loads((home.versions / name / "unlearner.json").read_text())
    assert document["forgotten"] == [], (
        "the deleted pairs' keys would decode with the served vocabularies"
    )
    assert verify_request(home, "p", retrain=False).ok
    _, model = load_current(home)
    model._forgotten = {123, 456}
    model.save(home.versions / name)  # a copy that keeps its forget log, re-signed
    _resign(home, name)
    assert _failed(home, "p") == {"no forget log"}


def test_exact_retraining_check_covers_receraser_aggregator(tmp_path):
    home = ServiceHome(tmp_path / "home")
    config = {
        "n_shards": 3,
        "train": FAST_TRAIN,
        "aggregator": {"kind": "attention", "epochs": 2, "batch_size": 512},
    }
    init_service(home, make_tiny(), "receraser", config)
    _delete(home, DeletionRequest(request_id="p", pairs=[("u1", "i2")]))
    record = home.ledger().get("p")
    assert (
        "aggregator" in record.audit["changed_parts"]
        and "aggregator" in record.audit["part_data_sha256"]
    )
    assert verify_request(home, "p", retrain=True).ok
    name, model = load_current(home)
    with torch.no_grad():
        next(iter(model.aggregator.users.parameters())).add_(
            1e-3
        )  # an aggregator retraining would not give
    model.save(home.versions / name)
    _resign(home, name)
    assert _failed(home, "p", retrain=True) == {"exact retraining"}


def test_exact_retraining_check_catches_a_part_that_differs(service):
    home = service.home
    _delete(home, DeletionRequest(request_id="p", pairs=[("u1", "i2")]))
    record = home.ledger().get("p")
    assert record.audit["removed_rows"] == 1 and len(record.audit["changed_parts"]) == 1
    name, model = load_current(home)
    shard = int(record.audit["changed_parts"][0].split("-")[1])
    with torch.no_grad():
        model.models[shard].user_emb.weight[0] += 1e-3  # a part that is not what retraining gives
    model.save(home.versions / name)  # re-signed, so only retraining can tell
    _resign(home, name)
    assert _failed(home, "p", retrain=True) == {"exact retraining"}


def test_cli_walk_through_with_retrain(tmp_path):
    """init -> token -> worker --drain -> verify, with the retrain method (one model, no shards)."""
    _load_commands()
    runner = CliRunner()
    data = tmp_path / "tiny.npz"
    make_tiny().save(data)
    home = tmp_path / "home"
    config = '{"train": {"max_epochs": 4, "batch_size": 256, "lr": 0.01}}'
    made = runner.invoke(
        app,
        [
            "service",
            "init",
            "--data",
            str(data),
            "--method",
            "retrain",
            "--config",
            config,
            "--home",
            str(home),
        ],
    )
    assert made.exit_code == 0, made.output
    assert "write token" in made.output and "serving v000001" in made.output
    missing = runner.invoke(
        app,
        [
            "service",
            "init",
            "--data",
            str(data),
            "--config",
            "absent.toml",
            "--home",
            str(tmp_path / "other"),
        ],
    )
    assert missing.exit_code != 0 and "--config 'absent.toml': no such file" in str(
        missing.exception
    )
    again = runner.invoke(app, ["service", "init", "--data", str(data), "--home", str(home)])
    assert again.exit_code != 0 and "already holds a service" in str(again.exception)
    ledger = ServiceHome(home).ledger()
    ledger.submit(DeletionRequest(request_id="r", users=["u5"], items=["i9"]))
    ledger.close()
    worked = runner.invoke(app, ["worker", "--drain", "--home", str(home)])
    assert worked.exit_code == 0 and "settled 1 request" in worked.output, worked.output
    verified = runner.invoke(app, ["verify", "r", "--home", str(home)])
    assert verified.exit_code == 0 and "[ok] exact retraining" in verified.output, verified.output
    frame = make_tiny().to_frame()
    u5_item = str(frame.item[frame.user == "u5"].iloc[0])
    proved = runner.invoke(
        app, ["verify", "r", "--no-retrain", "--pair", f"u5,{u5_item}", "--home", str(home)]
    )
    assert (
        proved.exit_code == 0
        and f"[ok] pair removed: ('u5', '{u5_item}') is among" in proved.output
    )
    kept = str(frame.user[(frame.user != "u5") & (frame.item != "i9")].iloc[0])
    other = str(frame.item[(frame.user == kept) & (frame.item != "i9")].iloc[0])
    unproved = runner.invoke(
        app, ["verify", "r", "--no-retrain", "--pair", f"{kept},{other}", "--home", str(home)]
    )
    assert unproved.exit_code == 1 and "[FAIL] pair removed" in unproved.output
    bad_pair = runner.invoke(app, ["verify", "r", "--pair", "u5", "--home", str(home)])
    assert bad_pair.exit_code != 0 and "give USER,ITEM" in str(bad_pair.exception)
    status = runner.invoke(app, ["service", "status", "--home", str(home)])
    assert '"published": 1' in status.output and "v000003" in status.output
    ledger = ServiceHome(home).ledger()
    record = ledger.get("r")
    ledger.close()
    assert (record.removed_version, record.removed_exact, record.version) == (2, False, 3), (
        "retrain removes approximately (IFRU) in v2, then retrains exactly in v3"
    )
    missing = runner.invoke(app, ["verify", "nope", "--home", str(home)])
    assert missing.exit_code != 0 and "no deletion request with id 'nope'" in str(missing.exception)


def test_cli_tokens_are_made_listed_by_name_and_revoked(tmp_path):
    _load_commands()
    runner = CliRunner()
    home = ServiceHome(tmp_path / "home")
    init_service(home, make_tiny(), "sisa", {"n_shards": 2, "train": FAST_TRAIN})

    def run(*args: str):
        return runner.invoke(app, ["service", "token", *args, "--home", str(home.path)])

    made = run("--role", "write", "--name", "ops", "--expires-days", "1")
    token = made.output.strip()
    assert made.exit_code == 0 and len(token) > 30
    listed = run("--list")
    assert listed.exit_code == 0 and token not in listed.output
    assert [line.split("\t")[:3] for line in listed.output.splitlines()] == [
        ["init-write", "write", "live"],
        ["init-read", "read", "live"],
        ["ops", "write", "live"],
    ]
    assert "already named 'ops'" in str(run("--name", "ops").exception)
    revoked = run("--revoke", "ops")
    assert revoked.exit_code == 0 and "revoked 1 token(s) named 'ops'" in revoked.output
    assert "ops\twrite\trevoked" in run("--list").output
    ledger = home.ledger()
    assert ledger.token_role(token) is None
    ledger.close()
    assert "no live token is named 'ops'" in str(run("--revoke", "ops").exception)
    assert "give one of --name NAME" in str(run().exception)
    assert "--expires-days must be positive" in str(
        run("--name", "x", "--expires-days", "0").exception
    )


def test_init_refuses_an_unknown_method_before_writing(tmp_path):
    with pytest.raises(ConfigError, match="unknown method"):
        init_service(
            ServiceHome(tmp_path / "h"), make_tiny(), "no-such-method", {"train": FAST_TRAIN}
        )
    assert not (tmp_path / "h").exists()


def test_init_refuses_one_label_class_for_a_bce_model_before_writing(tmp_path):
    """Without --threshold explicit ratings load as all-liked: a BCE model learnt nothing (every score
    about 0.99) and the service served it."""
    data = make_tiny()
    ones = data.with_labels(np.ones(len(data), dtype=data.label.dtype))
    with pytest.raises(ConfigError, match="--threshold"):
        init_service(ServiceHome(tmp_path / "h"), ones, "sisa", {"train": FAST_TRAIN})
    assert not (tmp_path / "h").exists()
    bpr = {"train": {**FAST_TRAIN, "loss": "bpr"}, "n_shards": 2}
    init_service(ServiceHome(tmp_path / "b"), ones, "sisa", bpr)  # BPR samples its own negatives


def _table_bytes(ledger: Ledger, table: str) -> bytes:
    """The table's files (heap and TOAST) as PostgreSQL holds them on disk, after a CHECKPOINT."""
    with ledger.engine.connect() as connection:
        connection.exec_driver_sql("CHECKPOINT")
        paths = connection.exec_driver_sql(
            "SELECT pg_relation_filepath(c.oid) FROM pg_class c WHERE c.oid = %(t)s::regclass "
            "OR c.oid = (SELECT reltoastrelid FROM pg_class WHERE oid = %(t)s::regclass)",
            {"t": table},
        ).scalars()
        return b"".join(
            connection.exec_driver_sql("SELECT pg_read_binary_file(%(p)s)", {"p": p}).scalar()
            for p in paths
            if p
        )


def _tuple_bytes(user: str, item: str) -> bytes:
    """A (user_id, item_id) pair as a PostgreSQL heap tuple stores it: two short varlenas in a row."""
    return b"".join(bytes([(len(v) + 1) << 1 | 1]) + v.encode() for v in (user, item))


@pytest.mark.parametrize("store", ["postgres"])
def test_on_postgresql_the_deleted_rows_leave_the_table_files_and_verify_names_the_log(service):
    """VACUUM FULL rewrites the tables, so their files hold no deleted row; what the write-ahead log
    still holds is stated, with the settings that bound it, not claimed checked."""
    home = service.home
    frame = make_tiny().to_frame()
    pairs = list(zip(frame.user[frame.user == "u7"], frame.item[frame.user == "u7"]))
    ledger = home.ledger()
    before = _table_bytes(ledger, "interactions")
    assert pairs and all(_tuple_bytes(u, i) in before for u, i in pairs), (
        "the scan finds stored rows"
    )
    _delete(home, DeletionRequest(request_id="u7", users=["u7"]))
    rewritten = _table_bytes(ledger, "interactions")
    assert not any(_tuple_bytes(u, i) in rewritten for u, i in pairs), (
        "the worker rewrote the table after serving the removal, before any verify"
    )
    result = verify_request(home, "u7", retrain=False)
    assert result.ok, [c for c in result.checks if not c.ok]
    store_file = next(c for c in result.checks if c.name == "store file")
    assert "VACUUM FULL" in store_file.detail
    assert (
        len(result.notes) == 1
        and "write-ahead log" in result.notes[0]
        and "max_wal_size=" in result.notes[0]
    )
    after = _table_bytes(ledger, "interactions") + _table_bytes(ledger, "requests")
    assert not any(_tuple_bytes(u, i) in after for u, i in pairs), (
        "no deleted row is left in the table files"
    )
    assert b'"u7"' not in after, "nor the request's ids in an old version of its ledger row"
    assert _tuple_bytes("u8", str(frame.item[frame.user == "u8"].iloc[0])) in after, (
        "the scan still sees kept rows"
    )
    ledger.close()


class _Stop(Exception):
    """Stands for the worker stopping between the two phases."""


def _stop_before_repair(name: str) -> None:
    if name == "repair_started":
        raise _Stop(name)


def test_verify_checks_the_removal_version_between_the_phases(service):
    """While a request is 'removed', verify checks the removal version: it loads no shard that held
    the rows, the others are bitwise the previous version's (by the copy of its manifest the ledger
    vouches for); a kept shard altered and re-signed is caught. The repair then resumes."""
    home = service.home
    _submit(home, ("u1", "i2"))
    with pytest.raises(_Stop):
        Worker(home, stage=_stop_before_repair).run(drain=True)
    ledger = home.ledger()
    record = ledger.get("p")
    ledger.close()
    assert record.status == "removed" and record.removed_exact and record.removed_version == 2
    result = verify_request(home, "p", retrain=False)
    checks = {c.name: c for c in result.checks}
    assert result.ok and "loads none of" in checks["removal version"].detail
    assert "are bitwise v000001's" in checks["removal version"].detail

    name, model = load_current(home)
    kept = next(k for k, shard in enumerate(model.models) if shard is not None)
    with torch.no_grad():
        next(iter(model.models[kept].parameters())).add_(1e-3)
    model.save(home.versions / name, keep_forgotten=False)
    manifest = read_manifest(home.versions / name)
    manifest["part_weights"] = part_weights(model)
    (home.versions / name / "manifest.json").write_text(json.dumps(manifest))
    _resign(home, name)
    result = verify_request(home, "p", retrain=False)
    failed = {c.name: c.detail for c in result.checks if not c.ok}
    assert set(failed) == {"removal version"} and f"shard-{kept}" in failed["removal version"]


def test_a_crash_between_the_phases_resumes_the_repair(service):
    home = service.home
    _submit(home, ("u1", "i2"))
    with pytest.raises(_Stop):
        Worker(home, stage=_stop_before_repair).run(drain=True)
    assert Worker(home).run(drain=True) == 1, "the next worker repairs what is pending"
    ledger = home.ledger()
    record = ledger.get("p")
    ledger.close()
    assert (record.status, record.removed_version, record.version) == ("published", 2, 3)
    assert not load_current(home)[1].pending
    assert verify_request(home, "p", retrain=True).ok


def _submit(home: ServiceHome, pair: tuple[str, str]) -> None:
    ledger = home.ledger()
    ledger.submit(DeletionRequest(request_id="p", pairs=[pair]))
    ledger.close()


def test_part_manifests_skip_set_aside_shards_and_catch_a_served_one(service):
    """Verifying a published request while a later one's removal version is served: a set-aside
    shard's recorded data hash predates the quarantine, not a mismatch; a served shard whose recorded
    hash is not that of its rows is one, even with the manifest re-signed."""
    home = service.home
    _delete(home, DeletionRequest(request_id="p", pairs=[("u1", "i2")]))
    ledger = home.ledger()
    ledger.submit(DeletionRequest(request_id="q", pairs=[("u3", "i0")]))
    ledger.close()
    with pytest.raises(_Stop):
        Worker(home, stage=_stop_before_repair).run(drain=True)
    name, model = load_current(home)
    assert model.quarantined_parts and not _failed(home, "p")
    served = next(k for k, shard in enumerate(model.models) if shard is not None)
    document = json.loads((home.versions / name / "unlearner.json").read_text())
    document["state"]["shard_info"][served]["data_hash"] = "0" * 64
    (home.versions / name / "unlearner.json").write_text(json.dumps(document))
    _resign(home, name)
    checks = {c.name: c for c in verify_request(home, "p", retrain=False).checks}
    assert {n for n, c in checks.items() if not c.ok} == {"part manifests"}
    assert f"shard-{served}" in checks["part manifests"].detail
