"""The ledger: migrations build exactly the declared schema; applying is one transaction; tokens."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from recunlearn.data.deletion import DeletionRequest
from recunlearn.service.store import ConflictError, Ledger, metadata
from tests.conftest import make_tiny


def test_migrations_build_the_declared_schema(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'x.sqlite'}")
    with ledger.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
        journal = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
    assert differences == [] and journal == "wal"
    Ledger(f"sqlite:///{tmp_path / 'x.sqlite'}").close()  # upgrading an up-to-date schema is a no-op


def test_submit_is_idempotent_by_id_and_conflicts_on_other_content(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'x.sqlite'}")
    record, created = ledger.submit(DeletionRequest(request_id="a", users=["u1"]))
    again, created_again = ledger.submit(DeletionRequest(request_id="a", users=["u1"]))
    assert created and not created_again and again.received_at == record.received_at
    with pytest.raises(ConflictError, match="different deletion"):
        ledger.submit(DeletionRequest(request_id="a", users=["u2"]))
    assert [e["kind"] for e in ledger.events("a")] == ["received"]
    ledger.submit(DeletionRequest(request_id="b", users=["u1", "u2"], pairs=[("u3", "i1"), ("u4", "i2")]))
    reordered = DeletionRequest(request_id="b", users=["u2", "u1", "u2"], pairs=[("u4", "i2"), ("u3", "i1")])
    assert ledger.submit(reordered)[1] is False, "the same ids in another order are the same request"
    assert ledger.checkpoint(), "no reader holds the store: the WAL is copied into the file and truncated"


def test_apply_deletes_rows_and_records_in_one_transaction(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'x.sqlite'}")
    data = make_tiny()
    ledger.add_interactions(data)
    request = DeletionRequest(request_id="a", users=["u1"], pairs=[("u2", "i0"), ("u2", "i1")])
    ledger.submit(request)
    named = ledger.matching_rows(request)
    assert named == int(request.rows(data).sum()) > 0

    def crash() -> None:
        raise RuntimeError("power cut")

    with pytest.raises(RuntimeError):
        ledger.record_applied(2, "v000002", "0" * 64, {"a": {}}, before_commit=crash)
    assert ledger.matching_rows(request) == named and ledger.get("a").status == "received", "rolled back whole"
    assert ledger.latest_version_number() == 0

    deleted = ledger.record_applied(2, "v000002", "0" * 64, {"a": {"method": "x"}})
    assert deleted == {"a": named} and ledger.matching_rows(request) == 0
    assert ledger.count_interactions() == len(data) - named
    record = ledger.get("a")
    assert record.status == "applied" and record.version == 2 and record.audit["store_rows_removed"] == named
    assert ledger.record_published(2) == ["a"] and ledger.get("a").status == "published"
    assert ledger.record_published(2) == [], "publishing twice changes nothing"


def test_tokens_are_stored_hashed_with_roles(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'x.sqlite'}")
    token = ledger.add_token("read", "t")
    assert ledger.token_role(token) == "read" and ledger.token_role(token + "x") is None
    with ledger.engine.connect() as connection:
        stored = connection.exec_driver_sql("SELECT token_sha256 FROM tokens").scalar()
    assert token not in stored
    with pytest.raises(ValueError, match="role"):
        ledger.add_token("admin", "t")


@pytest.mark.parametrize("url", ["bogus://x", "not a url"])
def test_a_bad_database_url_is_a_config_error(url):
    from recunlearn.errors import ConfigError

    with pytest.raises(ConfigError, match="database URL"):
        Ledger(url)


def test_a_sqlite_url_whose_folder_cannot_be_made_is_a_config_error(tmp_path):
    from recunlearn.errors import ConfigError

    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(ConfigError, match="database URL"):
        Ledger(f"sqlite:///{tmp_path / 'file' / 'x.db'}")
