"""The ledger, on each store: migrations up and down build exactly the declared schema; submitting is
idempotent, also under concurrency; applying is one transaction that keeps proof, not the ids; tokens."""

from __future__ import annotations

import json
import threading
import time

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from recunlearn.data.deletion import DeletionRequest
from recunlearn.errors import ConfigError, RecUnlearnError
from recunlearn.service import store as store_module
from recunlearn.service.store import (
    ConflictError,
    InvalidRequestId,
    Ledger,
    Proof,
    check_request_id,
    keyed,
    metadata,
)
from tests.conftest import make_tiny

KEY = bytes(range(32))


def _alembic(url: str) -> Config:
    config = Config()
    config.set_main_option(
        "script_location", str(store_module.Path(store_module.__file__).parent / "migrations")
    )
    config.set_main_option("sqlalchemy.url", url)
    return config


def test_migrations_build_the_declared_schema(store_url):
    ledger = Ledger(store_url, key=KEY)
    with ledger.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    assert differences == []
    if ledger.engine.dialect.name == "sqlite":
        with ledger.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    ledger.close()
    Ledger(store_url, key=KEY).close()  # upgrading an up-to-date schema is a no-op


def test_migrations_go_down_and_up_again(store_url):
    config = _alembic(store_url)
    command.upgrade(config, "head")
    engine = create_engine(store_url)
    assert {"interactions", "requests", "versions", "events", "tokens"} <= set(
        inspect(engine).get_table_names()
    )
    command.downgrade(config, "0001")
    assert "proof" not in {c["name"] for c in inspect(engine).get_columns("requests")}
    command.downgrade(config, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()
    ledger = Ledger(store_url, key=KEY)
    ledger.submit(DeletionRequest(request_id="a", users=["u1"]))
    assert ledger.get("a").status == "received"
    ledger.close()


def test_upgrading_drops_the_ids_older_records_kept(store_url):
    """A ledger written before proofs kept applied requests' ids and their removed pairs; opening it
    with the new code leaves digests only."""
    command.upgrade(_alembic(store_url), "0001")
    engine = create_engine(store_url)
    old_audit = {"removed_rows": 2, "removed_pairs": [["u1", "i1"], ["u1", "i2"]]}
    with engine.begin() as connection:
        for request_id, status, audit in (
            ("old", "published", old_audit),
            ("waiting", "received", None),
        ):
            spec = json.dumps(
                {"request_id": request_id, "pairs": [], "users": ["u1"], "items": [], "samples": []}
            )
            connection.execute(
                text(
                    "INSERT INTO requests (id, status, spec, spec_sha256, received_at, audit) "
                    "VALUES (:i, :s, :spec, 'x', 1.0, :a)"
                ),
                {"i": request_id, "s": status, "spec": spec, "a": audit and json.dumps(audit)},
            )
    engine.dispose()
    ledger = Ledger(store_url, key=KEY)
    old, waiting = ledger.get("old"), ledger.get("waiting")
    assert old.request is None and waiting.request.users == ("u1",), (
        "only the applied record's ids are dropped"
    )
    assert (
        old.proof == Proof.of(KEY, DeletionRequest(request_id="old", users=["u1"]))
        and old.named.users == 1
    )
    assert "removed_pairs" not in old.audit and ledger.was_removed(old, "u1", "i2")
    assert not ledger.was_removed(old, "u1", "i3")
    with pytest.raises(ConflictError):
        ledger.submit(DeletionRequest(request_id="old", users=["u2"]))
    assert ledger.submit(DeletionRequest(request_id="old", users=["u1"]))[1] is False
    ledger.close()


def test_submit_is_idempotent_by_id_and_conflicts_on_other_content(store_url):
    ledger = Ledger(store_url, key=KEY)
    record, created = ledger.submit(DeletionRequest(request_id="a", users=["u1"]))
    again, created_again = ledger.submit(DeletionRequest(request_id="a", users=["u1"]))
    assert created and not created_again and again.received_at == record.received_at
    with pytest.raises(ConflictError, match="different deletion"):
        ledger.submit(DeletionRequest(request_id="a", users=["u2"]))
    assert [e["kind"] for e in ledger.events("a")] == ["received"]
    ledger.submit(
        DeletionRequest(request_id="b", users=["u1", "u2"], pairs=[("u3", "i1"), ("u4", "i2")])
    )
    reordered = DeletionRequest(
        request_id="b", users=["u2", "u1", "u2"], pairs=[("u4", "i2"), ("u3", "i1")]
    )
    assert ledger.submit(reordered)[1] is False, (
        "the same ids in another order are the same request"
    )
    assert ledger.checkpoint() and ledger.flushed, (
        "no reader holds the store: deleted rows' bytes are flushed"
    )
    ledger.close()


def test_concurrent_first_submissions_store_one_request(store_url):
    """Threads submitting one new id at once: one creates it, the same body gets the record, another
    body a conflict; never a database error."""
    ledger = Ledger(store_url, key=KEY)
    n = 12
    barrier, outcomes = threading.Barrier(n), []

    def body(k: int) -> list[str]:
        return ["u9"] if k == n - 1 else ["u1"]

    def submit(k: int) -> None:
        request = DeletionRequest(request_id="race", users=body(k))
        barrier.wait()
        try:
            outcomes.append(("created" if ledger.submit(request)[1] else "same", k))
        except ConflictError:
            outcomes.append(("conflict", k))

    threads = [threading.Thread(target=submit, args=(k,)) for k in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    got = {k: kind for kind, k in outcomes}
    winner = [k for k, kind in got.items() if kind == "created"]
    assert len(outcomes) == n and len(winner) == 1
    assert got == {
        k: "created" if k == winner[0] else "same" if body(k) == body(winner[0]) else "conflict"
        for k in range(n)
    }
    assert ledger.get("race").request.users == tuple(body(winner[0]))
    assert [e["kind"] for e in ledger.events("race")] == ["received"]
    ledger.close()


@pytest.mark.parametrize(
    "bad",
    ["", "x" * 201, ".", "..", "a/b", "nul\x00inside", "tab\there", "lone\udfff", "line\nbreak"],
)
def test_request_ids_follow_one_rule(bad):
    with pytest.raises(InvalidRequestId, match="request ids are 1 to 200 printable characters"):
        check_request_id(bad)


def test_valid_request_ids_round_trip_and_bad_ones_are_refused_by_the_ledger(store_url):
    ledger = Ledger(store_url, key=KEY)
    for good in ("ticket-1001", "a b", "über", "...", ".hidden", "x" * 200):
        ledger.submit(DeletionRequest(request_id=good, users=["u1"]))
        assert ledger.get(good).request_id == good
    for bad in ("nul\x00inside", ".."):
        with pytest.raises(InvalidRequestId):
            ledger.submit(DeletionRequest(request_id=bad, users=["u1"]))
        with pytest.raises(InvalidRequestId):
            ledger.get(bad)
    ledger.close()


def _every_value(ledger: Ledger) -> list[str]:
    """Every value of every column of every table, as text."""
    with ledger.engine.connect() as connection:
        return [
            str(value)
            for table in metadata.sorted_tables
            for row in connection.execute(table.select())
            for value in row
        ]


def stored_pairs_of(ledger: Ledger) -> set[tuple[str, str]]:
    with ledger.engine.connect() as connection:
        return {
            tuple(r)
            for r in connection.exec_driver_sql("SELECT user_id, item_id FROM interactions")
        }


def test_apply_deletes_rows_and_drops_the_ids_in_one_transaction(store_url):
    ledger = Ledger(store_url, key=KEY)
    data = make_tiny()
    ledger.add_interactions(data)
    request = DeletionRequest(request_id="a", users=["u1"], pairs=[("u2", "i0"), ("u2", "i1")])
    ledger.submit(request)
    named = ledger.matching_digests(ledger.get("a").proof)
    assert named == int(request.rows(data).sum()) > 0

    def crash() -> None:
        raise RuntimeError("power cut")

    with pytest.raises(RuntimeError):
        ledger.record_staged(
            2, "v000002", "0" * 64, {"a": {"removed_exact": True}}, "full", before_commit=crash
        )
    record = ledger.get("a")
    assert ledger.matching_digests(record.proof) == named and record.status == "received", (
        "rolled back whole"
    )
    assert record.request == request and ledger.latest_version_number() == 0

    removed = [("u2", "i0"), ("u2", "i1")]
    deleted = ledger.record_staged(
        2,
        "v000002",
        "0" * 64,
        {"a": {"removed_exact": True, "removed_pair_digests": ledger.pair_digests(removed)}},
        "full",
    )
    record = ledger.get("a")
    assert deleted == {"a": named} and ledger.matching_digests(record.proof) == 0
    assert ledger.count_interactions() == len(data) - named
    assert (
        record.status == "received"
        and (record.removed_version, record.version) == (2, 2)
        and record.audit["store_rows_removed"] == named
    ), "received until its version is served"
    assert ledger.waiting(10) == [], "a request a version took up is not claimed again"
    assert record.request is None and record.named.model_dump() == {
        "pairs": 2,
        "users": 1,
        "items": 0,
    }
    assert ledger.was_removed(record, "u2", "i1") and not ledger.was_removed(record, "u2", "i2")
    texts = [
        v for v in _every_value(ledger) if v.startswith(("{", "["))
    ]  # every JSON column's value
    assert texts and not any(f'"{x}"' in v for v in texts for x in ("u1", "u2", "i0", "i1")), (
        "no named id is kept"
    )
    assert not stored_pairs_of(ledger) & {
        *removed,
        *((u, i) for u, i in stored_pairs_of(ledger) if u == "u1"),
    }
    assert record.proof.pairs == sorted({keyed(KEY, "pair", u, i) for u, i in removed})
    assert ledger.record_published(2) == ["a"] and ledger.get("a").status == "published"
    assert ledger.record_published(2) == [], "publishing twice changes nothing"
    ledger.close()


def test_two_phase_states_flip_only_when_their_version_is_published(store_url):
    """received -> removed (removal version served) -> repaired (repair version recorded) ->
    published (served); a state is recorded only once the version behind it is published."""
    ledger = Ledger(store_url, key=KEY)
    data = make_tiny()
    ledger.add_interactions(data)
    ledger.submit(DeletionRequest(request_id="a", users=["u1"]))
    ledger.submit(DeletionRequest(request_id="b", users=["u2"]))
    removal = {"removed_exact": True, "removed_rows": 3, "parts": ["shard-0"]}
    ledger.record_staged(2, "v000002", "0" * 64, {"a": removal}, "removal")
    record = ledger.get("a")
    assert (record.status, record.removed_version, record.removed_exact) == ("received", 2, True)
    assert record.version is None and record.request is None
    assert [r.request_id for r in ledger.waiting(10)] == ["b"]
    with pytest.raises(RecUnlearnError, match="is received, not removed"):
        ledger.record_staged(3, "v000003", "0" * 64, {"a": {}}, "repair")
    assert ledger.record_published(2) == ["a"]
    record = ledger.get("a")
    assert record.status == "removed" and record.removed_at is not None
    assert ledger.count_interactions() == len(data) - int((data.user == 1).sum())

    ledger.record_staged(3, "v000003", "0" * 64, {"a": {"parts": ["shard-0", "shard-1"]}}, "repair")
    record = ledger.get("a")
    assert (record.status, record.version, record.removed_version) == ("repaired", 3, 2)
    assert record.audit["parts"] == ["shard-0", "shard-1"] and record.audit["removed_rows"] == 3, (
        "the repair's audit is added to the removal's"
    )
    assert record.published_at is None
    ledger.record_published(3)
    record = ledger.get("a")
    assert record.status == "published" and record.published_at >= record.repaired_at
    assert [e["kind"] for e in ledger.events("a")] == [
        "received",
        "applied",
        "removed",
        "repaired",
        "published",
    ]
    assert ledger.get("b").status == "received"
    ledger.close()


def test_upgrading_to_two_phase_keeps_the_states_older_ledgers_recorded(store_url):
    """0003: an applied request (its full version staged) waits for that version as 'received'; a
    published one was removed and repaired by its version; downgrading is refused once a removal
    version exists."""
    config = _alembic(store_url)
    command.upgrade(config, "0002")
    engine = create_engine(store_url)
    with engine.begin() as connection:
        for request_id, status, version in (("old", "published", 2), ("staged", "applied", 3)):
            connection.execute(
                text(
                    "INSERT INTO requests (id, status, spec, proof, received_at, applied_at, "
                    "published_at, version, audit) VALUES (:i, :s, NULL, :p, 1.0, 2.0, :pub, :v, :a)"
                ),
                {
                    "i": request_id,
                    "s": status,
                    "p": Proof(users=[], items=[], pairs=[], samples=[]).model_dump_json(),
                    "pub": 3.0 if status == "published" else None,
                    "v": version,
                    "a": json.dumps({"exact": True}),
                },
            )
    command.upgrade(config, "head")
    ledger = Ledger(store_url, key=KEY)
    old, staged = ledger.get("old"), ledger.get("staged")
    assert (old.status, old.removed_version, old.removed_exact, old.removed_at) == (
        "published",
        2,
        True,
        3.0,
    )
    assert (staged.status, staged.removed_version, staged.version) == ("received", 3, 3)
    assert ledger.waiting(10) == []
    command.downgrade(config, "0002")
    with engine.connect() as connection:
        assert (
            connection.execute(text("SELECT status FROM requests WHERE id = 'staged'")).scalar()
            == "applied"
        )
    command.upgrade(config, "head")
    ledger.record_staged(4, "v000004", "0" * 64, {}, "removal")
    with pytest.raises(RuntimeError, match="cannot downgrade below 0003"):
        command.downgrade(config, "0002")
    ledger.close()
    engine.dispose()


def test_tokens_are_stored_hashed_with_roles_lifetimes_and_revocation(store_url, monkeypatch):
    ledger = Ledger(store_url, key=KEY)
    token = ledger.add_token("read", "reporting")
    assert ledger.token_role(token) == ("read", None) and ledger.token_role(token + "x") is None
    with ledger.engine.connect() as connection:
        stored = [str(v) for row in connection.exec_driver_sql("SELECT * FROM tokens") for v in row]
    assert not any(token in value for value in stored)
    with pytest.raises(ValueError, match="role"):
        ledger.add_token("admin", "t")
    with pytest.raises(ValueError, match="already named 'reporting'"):
        ledger.add_token("write", "reporting")
    with pytest.raises(ValueError, match="must be positive"):
        ledger.add_token("read", "short", expires_in=0)
    short = ledger.add_token("write", "short", expires_in=60)
    role, expires_at = ledger.token_role(short)
    assert role == "write" and 59 < expires_at - time.time() <= 60
    assert ledger.revoke_token("reporting") == 1 and ledger.token_role(token) is None
    assert ledger.revoke_token("reporting") == 0, "nothing live is left under that name"
    later = time.time() + 61
    monkeypatch.setattr(store_module.time, "time", lambda: later)
    assert ledger.token_role(short) is None, "expired"
    listed = {t["name"]: t for t in ledger.list_tokens()}
    assert set(listed) == {"reporting", "short"} and not any(t["live"] for t in listed.values())
    assert all(token not in json.dumps(t) and short not in json.dumps(t) for t in listed.values())
    ledger.add_token("read", "reporting")  # a revoked name may be used again
    ledger.close()


@pytest.mark.parametrize("url", ["bogus://x", "not a url"])
def test_a_bad_database_url_is_a_config_error(url):
    with pytest.raises(ConfigError, match="database URL"):
        Ledger(url, key=KEY)


def test_a_database_other_than_sqlite_or_postgresql_is_a_config_error(monkeypatch):
    from sqlalchemy import create_mock_engine

    monkeypatch.setattr(
        store_module, "create_engine", lambda url, **_: create_mock_engine(url, None)
    )
    with pytest.raises(ConfigError, match="SQLite or PostgreSQL, not mysql"):
        Ledger("mysql://u@h/db", key=KEY)


def test_a_sqlite_url_whose_folder_cannot_be_made_is_a_config_error(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(ConfigError, match="database URL"):
        Ledger(f"sqlite:///{tmp_path / 'file' / 'x.db'}", key=KEY)
