"""The ledger: interactions, deletion requests, model versions, audit events and API tokens in SQL.

SQLite (a file, WAL journal, ``synchronous=FULL``) by default, any SQLAlchemy URL (PostgreSQL) in
production. The schema is created and upgraded by the Alembic migrations shipped in
``service/migrations``; the tables below are what those migrations build (a test checks they agree).

A request moves ``received -> applied -> published`` or ``received -> failed``. The raw interactions
a request names are deleted in the same transaction that records it as applied, so the store never
says 'applied' while still holding the data, nor loses the data without saying why.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel
from sqlalchemy import (BigInteger, Column, Engine, Float, Index, Integer, MetaData, String, Table, Text,
                        create_engine, delete, event, func, insert, or_, select, tuple_, update)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from recunlearn.data.deletion import DeletionRequest
from recunlearn.data.interactions import Interactions, Vocabulary
from recunlearn.errors import ConfigError, RecUnlearnError

Status = Literal["received", "applied", "published", "failed"]
Role = Literal["read", "write"]
_CHUNK = 500
"""Ids per IN (...) clause, well under every database's bound-parameter limit."""

metadata = MetaData()

interactions = Table(
    "interactions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", String(200), nullable=False),
    Column("item_id", String(200), nullable=False),
    Column("label", Float, nullable=False),
    Column("rating", Float, nullable=True),
    Column("timestamp", BigInteger, nullable=False),
    Index("ix_interactions_user_item", "user_id", "item_id"),
    Index("ix_interactions_item", "item_id"),
)

requests = Table(
    "requests", metadata,
    Column("id", String(200), primary_key=True),
    Column("status", String(16), nullable=False, index=True),
    Column("spec", Text, nullable=False),
    Column("spec_sha256", String(64), nullable=False),
    Column("received_at", Float, nullable=False),
    Column("applied_at", Float, nullable=True),
    Column("published_at", Float, nullable=True),
    Column("failed_at", Float, nullable=True),
    Column("version", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("audit", Text, nullable=True),
)

versions = Table(
    "versions", metadata,
    Column("number", Integer, primary_key=True, autoincrement=False),
    Column("name", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("published_at", Float, nullable=True),
    Column("manifest_sha256", String(64), nullable=False),
    Column("request_ids", Text, nullable=False),
)

events = Table(
    "events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("request_id", String(200), nullable=True, index=True),
    Column("version", Integer, nullable=True),
    Column("detail", Text, nullable=False),
)

tokens = Table(
    "tokens", metadata,
    Column("token_sha256", String(64), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("role", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
)


class ConflictError(RecUnlearnError):
    """A request id resubmitted with different content."""


class RequestNotFound(RecUnlearnError, KeyError):
    """No request has this id."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class DeletionRecord(BaseModel):
    """A deletion request as the ledger holds it: what was asked, where it stands, what was done."""

    request_id: str
    status: Status
    request: DeletionRequest
    received_at: float
    applied_at: float | None = None
    published_at: float | None = None
    failed_at: float | None = None
    version: int | None = None
    """Model version that first served the model without this request's data."""
    error: str | None = None
    """Why the request failed (status 'failed')."""
    audit: dict[str, Any] | None = None
    """What was removed, by which method, which parts changed, timings and data hashes."""


def spec_json(request: DeletionRequest) -> str:
    return json.dumps(request.model_dump(mode="json"), sort_keys=True)


def _named(request: DeletionRequest) -> tuple[list, ...]:
    """What a request names, whatever the order or repetition of its ids (a resubmission may list
    them differently and is still the same request)."""
    return (sorted(set(request.users)), sorted(set(request.items)), sorted(set(map(tuple, request.pairs))),
            sorted(set(request.samples)))


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _chunks(values: Sequence, size: int = _CHUNK) -> Iterator[Sequence]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _sqlite_pragmas(engine: Engine) -> None:
    """WAL, full fsync at commit, zeroed free pages (deleted rows leave no bytes behind), wait for locks,
    and BEGIN IMMEDIATE for writers (no lock-upgrade deadlocks between processes)."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # transactions are begun below, not by the driver
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "secure_delete=ON", "busy_timeout=30000",
                       "foreign_keys=ON"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection):
        immediate = connection.get_execution_options().get("write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def migrate(engine: Engine) -> None:
    """Create or upgrade the schema to the newest migration."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.connect() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
        if connection.in_transaction():
            connection.commit()


class Ledger:
    """The SQL store of one service. Methods are transactions; none holds a lock across calls."""

    def __init__(self, url: str, *, upgrade: bool = True):
        is_sqlite = url.startswith("sqlite")
        try:
            if is_sqlite and url.startswith("sqlite:///"):
                Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
            self.engine = create_engine(url, connect_args={"check_same_thread": False} if is_sqlite else {})
        except (ArgumentError, NoSuchModuleError, ImportError, OSError) as exc:  # a malformed URL, an unknown
            raise ConfigError(f"database URL {url!r}: {exc}") from None  # dialect or driver, a folder it cannot make
        if is_sqlite:
            _sqlite_pragmas(self.engine)
        self._writer = self.engine.execution_options(write=True)
        if upgrade:
            migrate(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One write transaction (BEGIN IMMEDIATE on SQLite): committed on exit, rolled back on error."""
        with self._writer.begin() as connection:
            yield connection

    # interactions ------------------------------------------------------------------------------------
    def add_interactions(self, data: Interactions) -> int:
        frame = data.to_frame()
        rows = [{"user_id": u, "item_id": i, "label": float(lab),
                 "rating": None if np.isnan(r) else float(r), "timestamp": int(t)}
                for u, i, r, lab, t in zip(frame.user.tolist(), frame.item.tolist(), frame.rating.tolist(),
                                           frame.label.tolist(), frame.timestamp.tolist())]
        with self.write() as connection:
            for chunk in _chunks(rows, 5000):
                connection.execute(insert(interactions), list(chunk))
        return len(rows)

    def interactions(self, users: Vocabulary, items: Vocabulary) -> Interactions:
        """The stored rows over the given vocabularies, in insertion order."""
        with self.engine.connect() as connection:
            frame = pd.read_sql(select(interactions.c.user_id.label("user"), interactions.c.item_id.label("item"),
                                       interactions.c.label, interactions.c.rating, interactions.c.timestamp)
                                .order_by(interactions.c.id), connection)
        return Interactions.from_frame(frame, label="label", users=users, items=items, name="store")

    def count_interactions(self) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(interactions)).scalar_one())

    @staticmethod
    def _conditions(request: DeletionRequest) -> list:
        c = interactions.c
        conditions = [c.user_id.in_(list(chunk)) for chunk in _chunks(request.users)]
        conditions += [c.item_id.in_(list(chunk)) for chunk in _chunks(request.items)]
        conditions += [tuple_(c.user_id, c.item_id).in_([tuple(p) for p in chunk]) for chunk in _chunks(request.pairs)]
        return conditions

    def matching_rows(self, request: DeletionRequest, connection: Connection | None = None) -> int:
        """How many stored interactions the request names (0 once it is applied)."""
        query = select(func.count()).select_from(interactions).where(or_(*self._conditions(request)))
        if connection is not None:
            return int(connection.execute(query).scalar_one())
        with self.engine.connect() as own:
            return int(own.execute(query).scalar_one())

    # requests --------------------------------------------------------------------------------------------
    def submit(self, request: DeletionRequest) -> tuple[DeletionRecord, bool]:
        """Record a request; resubmitting its id returns the stored record (created = False).

        The same id with different content is a :class:`ConflictError`: ids are idempotency keys.
        """
        text = spec_json(request)
        with self.write() as connection:
            row = connection.execute(select(requests).where(requests.c.id == request.request_id)).mappings().first()
            if row is not None:
                return self._resubmitted(row, request), False
            now = time.time()
            connection.execute(insert(requests).values(id=request.request_id, status="received", spec=text,
                                                       spec_sha256=_sha256(text), received_at=now))
            self._event(connection, "received", request.request_id, detail={"size": request.size})
        return self.get(request.request_id), True

    def resubmission(self, request: DeletionRequest) -> DeletionRecord | None:
        """The stored record if ``request``'s id was submitted before (None if new); a
        :class:`ConflictError` if that id holds a different deletion. Lets the API answer a retry from
        the ledger before checking ids against the served model, which may have erased them since."""
        with self.engine.connect() as connection:
            row = connection.execute(select(requests).where(requests.c.id == request.request_id)).mappings().first()
        return None if row is None else self._resubmitted(row, request)

    def _resubmitted(self, row: Any, request: DeletionRequest) -> DeletionRecord:
        if row["spec_sha256"] != _sha256(spec_json(request)) and (
                _named(DeletionRequest.model_validate_json(row["spec"])) != _named(request)):
            raise ConflictError(f"request id {request.request_id!r} was already used for a different "
                                "deletion; choose a new id")
        return self._record(row)

    def get(self, request_id: str) -> DeletionRecord:
        with self.engine.connect() as connection:
            row = connection.execute(select(requests).where(requests.c.id == request_id)).mappings().first()
        if row is None:
            raise RequestNotFound(f"no deletion request with id {request_id!r}")
        return self._record(row)

    def waiting(self, limit: int) -> list[DeletionRecord]:
        """Received requests, oldest first."""
        with self.engine.connect() as connection:
            rows = connection.execute(select(requests).where(requests.c.status == "received")
                                      .order_by(requests.c.received_at, requests.c.id).limit(limit)).mappings().all()
        return [self._record(r) for r in rows]

    def by_status(self) -> dict[str, int]:
        with self.engine.connect() as connection:
            rows = connection.execute(select(requests.c.status, func.count()).group_by(requests.c.status)).all()
        return {status: int(n) for status, n in rows}

    def records(self, status: Status | None = None) -> list[DeletionRecord]:
        query = select(requests).order_by(requests.c.received_at, requests.c.id)
        if status is not None:
            query = query.where(requests.c.status == status)
        with self.engine.connect() as connection:
            return [self._record(r) for r in connection.execute(query).mappings().all()]

    def fail(self, request_id: str, reason: str) -> None:
        with self.write() as connection:
            done = connection.execute(update(requests).where(requests.c.id == request_id,
                                                             requests.c.status == "received")
                                      .values(status="failed", failed_at=time.time(), error=reason)).rowcount
            if done:
                self._event(connection, "failed", request_id, detail={"reason": reason})

    def record_applied(self, version: int, name: str, manifest_sha256: str, audits: dict[str, dict[str, Any]],
                       before_commit: Callable[[], None] = lambda: None) -> dict[str, int]:
        """In one transaction: delete the requests' interactions, mark them applied with their audits,
        and record the staged version that holds the model without them. Returns rows deleted per request.

        ``before_commit`` runs inside the transaction, after every change (the crash tests kill there)."""
        now = time.time()
        deleted: dict[str, int] = {}
        with self.write() as connection:
            for request_id, audit in audits.items():
                row = connection.execute(select(requests).where(requests.c.id == request_id)).mappings().one()
                if row["status"] != "received":
                    raise RecUnlearnError(f"request {request_id!r} is {row['status']}, not received")
                request = DeletionRequest.model_validate_json(row["spec"])
                removed = sum(connection.execute(delete(interactions).where(condition)).rowcount
                              for condition in self._conditions(request))
                deleted[request_id] = removed
                audit = {**audit, "store_rows_removed": removed}
                connection.execute(update(requests).where(requests.c.id == request_id).values(
                    status="applied", applied_at=now, version=version, audit=json.dumps(audit)))
                self._event(connection, "applied", request_id, version, {"store_rows_removed": removed})
            connection.execute(insert(versions).values(number=version, name=name, status="staged", created_at=now,
                                                       manifest_sha256=manifest_sha256,
                                                       request_ids=json.dumps(sorted(audits))))
            self._event(connection, "staged", None, version, {"requests": sorted(audits)})
            before_commit()
        self.checkpoint()
        return deleted

    def record_initial_version(self, version: int, name: str, manifest_sha256: str) -> None:
        with self.write() as connection:
            connection.execute(insert(versions).values(number=version, name=name, status="published",
                                                       created_at=time.time(), published_at=time.time(),
                                                       manifest_sha256=manifest_sha256, request_ids="[]"))
            self._event(connection, "published", None, version, {"requests": []})

    def staged_versions(self) -> list[dict[str, Any]]:
        with self.engine.connect() as connection:
            rows = connection.execute(select(versions).where(versions.c.status == "staged")
                                      .order_by(versions.c.number)).mappings().all()
        return [dict(r) for r in rows]

    def version(self, number: int) -> dict[str, Any] | None:
        with self.engine.connect() as connection:
            row = connection.execute(select(versions).where(versions.c.number == number)).mappings().first()
        return None if row is None else dict(row)

    def latest_version_number(self) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(select(func.coalesce(func.max(versions.c.number), 0))).scalar_one())

    def record_published(self, version: int) -> list[str]:
        """Mark a staged version published (older ones retired) and its requests published; idempotent."""
        now = time.time()
        with self.write() as connection:
            row = connection.execute(select(versions).where(versions.c.number == version)).mappings().one()
            if row["status"] != "staged":
                return []
            connection.execute(update(versions).where(versions.c.status == "published")
                               .values(status="retired"))
            connection.execute(update(versions).where(versions.c.number == version)
                               .values(status="published", published_at=now))
            ids = json.loads(row["request_ids"])
            for request_id in ids:
                done = connection.execute(update(requests).where(requests.c.id == request_id,
                                                                 requests.c.status == "applied")
                                          .values(status="published", published_at=now)).rowcount
                if done:
                    self._event(connection, "published", request_id, version, {})
            self._event(connection, "published", None, version, {"requests": ids})
        return ids

    def events(self, request_id: str | None = None) -> list[dict[str, Any]]:
        query = select(events).order_by(events.c.id)
        if request_id is not None:
            query = query.where(events.c.request_id == request_id)
        with self.engine.connect() as connection:
            return [{**dict(r), "detail": json.loads(r["detail"])} for r in connection.execute(query).mappings()]

    # tokens -------------------------------------------------------------------------------------------------
    def add_token(self, role: Role, name: str) -> str:
        """A new bearer token (shown once; only its sha256 is stored)."""
        if role not in ("read", "write"):
            raise RecUnlearnError(f"token role must be 'read' or 'write', got {role!r}")
        token = secrets.token_urlsafe(32)
        with self.write() as connection:
            connection.execute(insert(tokens).values(token_sha256=_sha256(token), name=name, role=role,
                                                     created_at=time.time()))
        return token

    def token_role(self, token: str) -> Role | None:
        with self.engine.connect() as connection:
            role = connection.execute(select(tokens.c.role).where(tokens.c.token_sha256 == _sha256(token))).scalar()
        return role

    # helpers ------------------------------------------------------------------------------------------------
    def checkpoint(self) -> bool:
        """SQLite: copy the WAL into the database file and truncate it, so that the file's old page images
        of deleted rows are overwritten (secure_delete zeroes them) and none linger in the log. False
        when a reader in the middle of a transaction held it off (the worker tries again each pass,
        and ``verify`` fails its store check until it succeeds); True otherwise and for other databases."""
        if self.engine.dialect.name != "sqlite":
            return True
        with self.engine.connect() as connection:
            busy = connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").first()[0]
        return busy == 0

    @staticmethod
    def _event(connection: Connection, kind: str, request_id: str | None, version: int | None = None,
               detail: dict[str, Any] | None = None) -> None:
        connection.execute(insert(events).values(at=time.time(), kind=kind, request_id=request_id, version=version,
                                                 detail=json.dumps(detail or {})))

    @staticmethod
    def _record(row: Any) -> DeletionRecord:
        return DeletionRecord(request_id=row["id"], status=row["status"],
                              request=DeletionRequest.model_validate_json(row["spec"]),
                              received_at=row["received_at"], applied_at=row["applied_at"],
                              published_at=row["published_at"], failed_at=row["failed_at"], version=row["version"],
                              error=row["error"], audit=None if row["audit"] is None else json.loads(row["audit"]))
