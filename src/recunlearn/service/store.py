"""The ledger: interactions, deletion requests, model versions, audit events and API tokens in SQL.

SQLite (a file, WAL journal, ``synchronous=FULL``) by default, PostgreSQL (``postgresql+psycopg://``)
in production; no other database. The schema is created and upgraded by the Alembic migrations shipped
in ``service/migrations``; the tables below are what those migrations build (a test checks they agree).

A request moves ``received -> removed -> repaired -> published`` or ``received -> failed``:
``removed`` once a version that no longer uses its data is served (its parts set aside, exact, or an
approximate update: ``removed_exact``), ``repaired`` once the version retrained exactly without it is
recorded, ``published`` once that version is served. A method without a removal phase publishes one
version that does both (kind 'full'): ``received -> published``. The raw interactions a request names
are deleted in the same transaction that records the first version without them, so the store never
loses the data without saying why; the request stays ``received`` until that version is served, since
a state the ledger reports must be one the API serves. The same transaction drops the ids the request
named: from then on the ledger holds only their keyed digests
(HMAC-SHA256 under the service's key, kept outside the database), which prove what was removed to
whoever holds the key without letting a reader of the ledger list what a deleted user did.

Every transaction of the ledger is here, in one module, so that each state change can be read
beside the others it must stay consistent with.
"""

from __future__ import annotations

import hashlib
import hmac
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
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    func,
    insert,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

from recunlearn.data.deletion import DeletionRequest
from recunlearn.data.interactions import Interactions, Vocabulary
from recunlearn.errors import ConfigError, RecUnlearnError

Status = Literal["received", "removed", "repaired", "published", "failed"]
VersionKind = Literal["removal", "repair", "full"]
"""'removal': the requests' data set aside (parts quarantined) or removed approximately, pending
repair; 'repair': the pending requests retrained exactly; 'full': both in one version."""
Role = Literal["read", "write"]
_CHUNK = 500
"""Ids per IN (...) clause, well under every database's bound-parameter limit."""

metadata = MetaData()

interactions = Table(
    "interactions",
    metadata,
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
    "requests",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("status", String(16), nullable=False, index=True),
    Column("spec", Text, nullable=True),
    Column("proof", Text, nullable=False),
    Column("received_at", Float, nullable=False),
    Column("applied_at", Float, nullable=True),
    Column("published_at", Float, nullable=True),
    Column("failed_at", Float, nullable=True),
    Column("version", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("audit", Text, nullable=True),
    Column("removed_version", Integer, nullable=True),
    Column("removed_exact", Boolean, nullable=True),
    Column("removed_at", Float, nullable=True),
    Column("repaired_at", Float, nullable=True),
)

versions = Table(
    "versions",
    metadata,
    Column("number", Integer, primary_key=True, autoincrement=False),
    Column("name", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("published_at", Float, nullable=True),
    Column("manifest_sha256", String(64), nullable=False),
    Column("request_ids", Text, nullable=False),
    Column("kind", String(16), nullable=False),
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("request_id", String(200), nullable=True, index=True),
    Column("version", Integer, nullable=True),
    Column("detail", Text, nullable=False),
)

tokens = Table(
    "tokens",
    metadata,
    Column("token_sha256", String(64), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("role", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=True),
    Column("revoked_at", Float, nullable=True),
)

SUPPORTED_DIALECTS = ("sqlite", "postgresql")
REQUEST_ID_RULE = "1 to 200 printable characters, no '/', not '.' or '..'"
"""What a request id may be: it is read back as one path segment (``GET /v1/deletions/{id}``), and
PostgreSQL text cannot hold NUL."""


class ConflictError(RecUnlearnError):
    """A request id resubmitted with different content."""


class RequestNotFound(RecUnlearnError, KeyError):
    """No request has this id."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class InvalidRequestId(RecUnlearnError):
    """A request id outside :data:`REQUEST_ID_RULE`."""


def check_request_id(value: str) -> str:
    """``value`` if it follows :data:`REQUEST_ID_RULE`, else :class:`InvalidRequestId`."""
    if (
        not 1 <= len(value) <= 200
        or not value.isprintable()
        or "/" in value
        or value in (".", "..")
    ):
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise InvalidRequestId(
            f"request id {shown!r} is not valid: request ids are {REQUEST_ID_RULE}"
        )
    return value


def keyed(key: bytes, kind: str, *ids: str) -> str:
    """HMAC-SHA256 (128 bits, hex) of one id or pair under the service's key: whoever holds the key can
    check an id against it; a reader of the ledger cannot list or guess the ids."""
    return hmac.digest(key, json.dumps([kind, *ids]).encode(), "sha256").hex()[:32]


class Proof(BaseModel):
    """What a request named, as keyed digests: compared on resubmission, and matched by ``verify``
    against the store, data files and vocabularies after the ids themselves are dropped."""

    users: list[str]
    items: list[str]
    pairs: list[str]
    samples: list[str]

    @classmethod
    def of(cls, key: bytes, request: DeletionRequest) -> Proof:
        return cls(
            users=sorted({keyed(key, "user", u) for u in request.users}),
            items=sorted({keyed(key, "item", i) for i in request.items}),
            pairs=sorted({keyed(key, "pair", u, i) for u, i in request.pairs}),
            samples=sorted({keyed(key, "sample", s) for s in request.samples}),
        )

    def matches(self, key: bytes, users: Sequence[str], items: Sequence[str]) -> np.ndarray:
        """Per (user, item) row, whether the request names it (its user, its item or the pair)."""
        user_set, item_set, pair_set = set(self.users), set(self.items), set(self.pairs)
        by_user = {u: keyed(key, "user", u) in user_set for u in set(users)} if user_set else {}
        by_item = {i: keyed(key, "item", i) in item_set for i in set(items)} if item_set else {}
        return np.fromiter(
            (
                by_user.get(u, False)
                or by_item.get(i, False)
                or (bool(pair_set) and keyed(key, "pair", u, i) in pair_set)
                for u, i in zip(users, items)
            ),
            bool,
            len(users),
        )

    def named_users_in(self, key: bytes, ids: Sequence[str]) -> list[str]:
        """The ids among ``ids`` that the request deletes whole."""
        wanted = set(self.users)
        return [u for u in ids if keyed(key, "user", u) in wanted]


class Named(BaseModel):
    """How many ids a request named (the ids are not shown)."""

    pairs: int
    users: int
    items: int


class DeletionStatus(BaseModel):
    """A deletion request as the API shows it: where it stands and what was done, never the ids."""

    request_id: str
    status: Status
    named: Named
    received_at: float
    applied_at: float | None = None
    """When the store's rows were deleted and the first version without them recorded."""
    removed_at: float | None = None
    """When a version without this request's data was first served."""
    removed_exact: bool | None = None
    """Whether that removal was exact (parts that held the data set aside) or approximate (an
    influence update of a single model, until the repair retrains it)."""
    removed_version: int | None = None
    """Model version that first served the model without this request's data."""
    repaired_at: float | None = None
    """When the version retrained exactly without the data was recorded."""
    published_at: float | None = None
    """When that version was served."""
    failed_at: float | None = None
    version: int | None = None
    """Model version retrained exactly without this request's data (set once repaired)."""
    error: str | None = None
    """Why the request failed (status 'failed')."""
    audit: dict[str, Any] | None = None
    """How many rows were removed (and keyed digests of the pairs), by which method, which parts
    changed, timings and data hashes."""


class DeletionRecord(DeletionStatus):
    """A deletion request as the ledger holds it."""

    request: DeletionRequest | None
    """The ids it names, until its data is deleted from the store (None from then on)."""
    proof: Proof

    def public(self) -> DeletionStatus:
        return DeletionStatus.model_validate(
            self.model_dump(include=set(DeletionStatus.model_fields))
        )


def spec_json(request: DeletionRequest) -> str:
    return json.dumps(request.model_dump(mode="json"), sort_keys=True)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _chunks(values: Sequence, size: int = _CHUNK) -> Iterator[Sequence]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _sqlite_pragmas(engine: Engine) -> None:
    """WAL, full fsync at commit, zeroed free pages (deleted rows leave no bytes behind), wait for locks,
    and BEGIN IMMEDIATE for writers (no lock-upgrade deadlocks between processes)."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # transactions are begun below, not by the driver
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            "synchronous=FULL",
            "secure_delete=ON",
            "busy_timeout=30000",
            "foreign_keys=ON",
        ):
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
    """The SQL store of one service. Methods are transactions; none holds a lock across calls.

    ``key`` is the service's secret for keyed digests (``ServiceHome.key()``)."""

    def __init__(self, url: str, *, key: bytes, upgrade: bool = True):
        is_sqlite = url.startswith("sqlite")
        try:
            if is_sqlite and url.startswith("sqlite:///"):
                Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
            self.engine = create_engine(
                url, connect_args={"check_same_thread": False} if is_sqlite else {}
            )
        except (
            ArgumentError,
            NoSuchModuleError,
            ImportError,
            OSError,
        ) as exc:  # a malformed URL, an unknown
            raise ConfigError(
                f"database URL {url!r}: {exc}"
            ) from None  # dialect or driver, a folder it cannot make
        if self.engine.dialect.name not in SUPPORTED_DIALECTS:
            raise ConfigError(
                f"database URL {url!r}: the service keeps its ledger in SQLite or PostgreSQL, "
                f"not {self.engine.dialect.name}"
            )
        if is_sqlite:
            _sqlite_pragmas(self.engine)
        self.key = key
        self.flushed = False
        """Whether deleted rows' bytes are known to be gone from the store's files (see :meth:`checkpoint`)."""
        self._writer = self.engine.execution_options(write=True)
        if upgrade:
            migrate(self.engine)
            self._drop_ids_of_older_records()

    def close(self) -> None:
        self.engine.dispose()

    def _drop_ids_of_older_records(self) -> None:
        """Records written before proofs existed (an empty proof after the migration): give them their
        proof, and drop the ids of applied ones and the removed pairs their audits listed."""
        older = select(requests).where(requests.c.proof == "")
        with (
            self.engine.connect() as connection
        ):  # a read first: opening a converted ledger takes no write lock
            if connection.execute(older.limit(1)).first() is None:
                return
        with self.write() as connection:
            for row in connection.execute(older).mappings().all():
                request = DeletionRequest.model_validate_json(row["spec"])
                done = row["status"] == "published" or row["removed_version"] is not None
                audit = None if row["audit"] is None else json.loads(row["audit"])
                if audit is not None and "removed_pairs" in audit:
                    audit["removed_pair_digests"] = self.pair_digests(audit.pop("removed_pairs"))
                connection.execute(
                    update(requests)
                    .where(requests.c.id == row["id"])
                    .values(
                        proof=Proof.of(self.key, request).model_dump_json(),
                        spec=None if done else row["spec"],
                        audit=None if audit is None else json.dumps(audit),
                    )
                )

    def pair_digests(self, pairs: Sequence[Sequence[str]]) -> list[str]:
        """Keyed digests of removed (user, item) pairs, as an audit keeps them."""
        return sorted({keyed(self.key, "pair", str(u), str(i)) for u, i in pairs})

    def was_removed(self, record: DeletionRecord, user: str, item: str) -> bool:
        """Whether the request's audit lists (user, item) among the pairs it removed."""
        return keyed(self.key, "pair", user, item) in set(
            (record.audit or {}).get("removed_pair_digests", [])
        )

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One write transaction (BEGIN IMMEDIATE on SQLite): committed on exit, rolled back on error."""
        with self._writer.begin() as connection:
            yield connection

    # interactions ------------------------------------------------------------------------------------
    def add_interactions(self, data: Interactions) -> int:
        frame = data.to_frame()
        rows = [
            {
                "user_id": u,
                "item_id": i,
                "label": float(lab),
                "rating": None if np.isnan(r) else float(r),
                "timestamp": int(t),
            }
            for u, i, r, lab, t in zip(
                frame.user.tolist(),
                frame.item.tolist(),
                frame.rating.tolist(),
                frame.label.tolist(),
                frame.timestamp.tolist(),
            )
        ]
        with self.write() as connection:
            for chunk in _chunks(rows, 5000):
                connection.execute(insert(interactions), list(chunk))
        return len(rows)

    def interactions(self, users: Vocabulary, items: Vocabulary) -> Interactions:
        """The stored rows over the given vocabularies, in insertion order."""
        with self.engine.connect() as connection:
            frame = pd.read_sql(
                select(
                    interactions.c.user_id.label("user"),
                    interactions.c.item_id.label("item"),
                    interactions.c.label,
                    interactions.c.rating,
                    interactions.c.timestamp,
                ).order_by(interactions.c.id),
                connection,
            )
        return Interactions.from_frame(frame, label="label", users=users, items=items, name="store")

    def count_interactions(self) -> int:
        with self.engine.connect() as connection:
            return int(
                connection.execute(select(func.count()).select_from(interactions)).scalar_one()
            )

    @staticmethod
    def _conditions(request: DeletionRequest) -> list:
        c = interactions.c
        conditions = [c.user_id.in_(list(chunk)) for chunk in _chunks(request.users)]
        conditions += [c.item_id.in_(list(chunk)) for chunk in _chunks(request.items)]
        conditions += [
            tuple_(c.user_id, c.item_id).in_([tuple(p) for p in chunk])
            for chunk in _chunks(request.pairs)
        ]
        return conditions

    def matching_digests(self, proof: Proof) -> int:
        """How many stored interactions match a request known by its digests only (every row is read)."""
        with self.engine.connect() as connection:
            rows = connection.execute(select(interactions.c.user_id, interactions.c.item_id)).all()
        return int(proof.matches(self.key, [r[0] for r in rows], [r[1] for r in rows]).sum())

    # requests --------------------------------------------------------------------------------------------
    def submit(self, request: DeletionRequest) -> tuple[DeletionRecord, bool]:
        """Record a request; resubmitting its id returns the stored record (created = False).

        The same id with different content is a :class:`ConflictError`: ids are idempotency keys.
        """
        check_request_id(request.request_id)
        proof = Proof.of(self.key, request)
        new = {
            "id": request.request_id,
            "status": "received",
            "spec": spec_json(request),
            "proof": proof.model_dump_json(),
            "received_at": time.time(),
        }
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        with (
            self.write() as connection
        ):  # insert-or-keep in one statement: concurrent first submissions race here
            created = (
                connection.execute(
                    dialect.insert(requests)
                    .values(**new)
                    .on_conflict_do_nothing(index_elements=["id"])
                    .returning(requests.c.id)
                ).first()
                is not None
            )
            if created:
                self._event(
                    connection, "received", request.request_id, detail={"size": request.size}
                )
            row = (
                connection.execute(select(requests).where(requests.c.id == request.request_id))
                .mappings()
                .one()
            )
        return (self._record(row), True) if created else (self._resubmitted(row, proof), False)

    def resubmission(self, request: DeletionRequest) -> DeletionRecord | None:
        """The stored record if ``request``'s id was submitted before (None if new); a
        :class:`ConflictError` if that id holds a different deletion. Lets the API answer a retry from
        the ledger before checking ids against the served model, which may have erased them since."""
        check_request_id(request.request_id)
        with self.engine.connect() as connection:
            row = (
                connection.execute(select(requests).where(requests.c.id == request.request_id))
                .mappings()
                .first()
            )
        return None if row is None else self._resubmitted(row, Proof.of(self.key, request))

    def _resubmitted(self, row: Any, proof: Proof) -> DeletionRecord:
        """The stored record if it names the same ids (in any order or repetition), else a conflict."""
        if Proof.model_validate_json(row["proof"]) != proof:
            raise ConflictError(
                f"request id {row['id']!r} was already used for a different "
                "deletion; choose a new id"
            )
        return self._record(row)

    def get(self, request_id: str) -> DeletionRecord:
        check_request_id(request_id)
        with self.engine.connect() as connection:
            row = (
                connection.execute(select(requests).where(requests.c.id == request_id))
                .mappings()
                .first()
            )
        if row is None:
            raise RequestNotFound(f"no deletion request with id {request_id!r}")
        return self._record(row)

    def waiting(self, limit: int) -> list[DeletionRecord]:
        """Received requests no version has taken up yet, oldest first."""
        with self.engine.connect() as connection:
            rows = (
                connection.execute(
                    select(requests)
                    .where(requests.c.status == "received", requests.c.removed_version.is_(None))
                    .order_by(requests.c.received_at, requests.c.id)
                    .limit(limit)
                )
                .mappings()
                .all()
            )
        return [self._record(r) for r in rows]

    def by_status(self) -> dict[str, int]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(requests.c.status, func.count()).group_by(requests.c.status)
            ).all()
        return {status: int(n) for status, n in rows}

    def records(self, status: Status | None = None) -> list[DeletionRecord]:
        query = select(requests).order_by(requests.c.received_at, requests.c.id)
        if status is not None:
            query = query.where(requests.c.status == status)
        with self.engine.connect() as connection:
            return [self._record(r) for r in connection.execute(query).mappings().all()]

    def fail(self, request_id: str, reason: str) -> None:
        with self.write() as connection:
            done = connection.execute(
                update(requests)
                .where(requests.c.id == request_id, requests.c.status == "received")
                .values(status="failed", failed_at=time.time(), error=reason)
            ).rowcount
            if done:
                self._event(connection, "failed", request_id, detail={"reason": reason})

    def record_staged(
        self,
        version: int,
        name: str,
        manifest_sha256: str,
        audits: dict[str, dict[str, Any]],
        kind: VersionKind,
        before_commit: Callable[[], None] = lambda: None,
    ) -> dict[str, int]:
        """In one transaction: record the staged version ``version`` and what it does for each
        request. A 'removal' or 'full' version takes up received requests: their interactions are
        deleted from the store and their ids dropped (they stay 'received' until the version is
        served); each audit says whether the removal is exact (``removed_exact``). A 'repair' version marks removed requests 'repaired', its audit added to theirs.
        Returns the store rows deleted per request.

        ``before_commit`` runs inside the transaction, after every change (the crash tests kill there)."""
        now = time.time()
        deleted: dict[str, int] = {}
        with self.write() as connection:
            for request_id, audit in audits.items():
                row = (
                    connection.execute(select(requests).where(requests.c.id == request_id))
                    .mappings()
                    .one()
                )
                if kind == "repair":
                    if row["status"] != "removed":
                        raise RecUnlearnError(
                            f"request {request_id!r} is {row['status']}, not removed"
                        )
                    values = {
                        "status": "repaired",
                        "repaired_at": now,
                        "version": version,
                        "audit": json.dumps({**json.loads(row["audit"]), **audit}),
                    }
                    self._event(connection, "repaired", request_id, version, {})
                else:
                    if row["status"] != "received" or row["removed_version"] is not None:
                        raise RecUnlearnError(f"request {request_id!r} is already taken up")
                    request = DeletionRequest.model_validate_json(row["spec"])
                    removed = sum(
                        connection.execute(delete(interactions).where(condition)).rowcount
                        for condition in self._conditions(request)
                    )
                    deleted[request_id] = removed
                    values = {
                        "applied_at": now,
                        "removed_version": version,
                        "removed_exact": bool(audit["removed_exact"]),
                        "audit": json.dumps({**audit, "store_rows_removed": removed}),
                        "spec": None,
                    }
                    if kind == "full":
                        values.update(version=version, repaired_at=now)
                    self._event(
                        connection, "applied", request_id, version, {"store_rows_removed": removed}
                    )
                connection.execute(
                    update(requests).where(requests.c.id == request_id).values(**values)
                )
            connection.execute(
                insert(versions).values(
                    number=version,
                    name=name,
                    kind=kind,
                    status="staged",
                    created_at=now,
                    manifest_sha256=manifest_sha256,
                    request_ids=json.dumps(sorted(audits)),
                )
            )
            self._event(
                connection, "staged", None, version, {"kind": kind, "requests": sorted(audits)}
            )
            before_commit()
        if kind != "repair":  # the worker runs the checkpoint once the version is served
            self.flushed = False
        return deleted

    def record_initial_version(self, version: int, name: str, manifest_sha256: str) -> None:
        with self.write() as connection:
            connection.execute(
                insert(versions).values(
                    number=version,
                    name=name,
                    kind="full",
                    status="published",
                    created_at=time.time(),
                    published_at=time.time(),
                    manifest_sha256=manifest_sha256,
                    request_ids="[]",
                )
            )
            self._event(connection, "published", None, version, {"requests": []})

    def staged_versions(self) -> list[dict[str, Any]]:
        with self.engine.connect() as connection:
            rows = (
                connection.execute(
                    select(versions)
                    .where(versions.c.status == "staged")
                    .order_by(versions.c.number)
                )
                .mappings()
                .all()
            )
        return [dict(r) for r in rows]

    def version(self, number: int) -> dict[str, Any] | None:
        with self.engine.connect() as connection:
            row = (
                connection.execute(select(versions).where(versions.c.number == number))
                .mappings()
                .first()
            )
        return None if row is None else dict(row)

    def latest_version_number(self) -> int:
        with self.engine.connect() as connection:
            return int(
                connection.execute(
                    select(func.coalesce(func.max(versions.c.number), 0))
                ).scalar_one()
            )

    def record_published(self, version: int) -> list[str]:
        """Mark a staged version published (older ones retired) and move its requests on: a removal
        version's to 'removed', a repair version's to 'published', a full version's from 'received'
        to 'published'. Idempotent. Called only once the pointer names the version, so that every
        state it records is one the API serves."""
        now = time.time()
        with self.write() as connection:
            row = (
                connection.execute(select(versions).where(versions.c.number == version))
                .mappings()
                .one()
            )
            if row["status"] != "staged":
                return []
            connection.execute(
                update(versions).where(versions.c.status == "published").values(status="retired")
            )
            connection.execute(
                update(versions)
                .where(versions.c.number == version)
                .values(status="published", published_at=now)
            )
            if row["kind"] == "repair":
                source, target, values = "repaired", "published", {"published_at": now}
            elif row["kind"] == "removal":
                source, target, values = "received", "removed", {"removed_at": now}
            else:
                source, target = "received", "published"
                values = {"removed_at": now, "published_at": now}
            ids = json.loads(row["request_ids"])
            for request_id in ids:
                done = connection.execute(
                    update(requests)
                    .where(requests.c.id == request_id, requests.c.status == source)
                    .values(status=target, **values)
                ).rowcount
                if done:
                    self._event(connection, target, request_id, version, {})
            self._event(
                connection, "published", None, version, {"kind": row["kind"], "requests": ids}
            )
        return ids

    def events(self, request_id: str | None = None) -> list[dict[str, Any]]:
        query = select(events).order_by(events.c.id)
        if request_id is not None:
            query = query.where(events.c.request_id == request_id)
        with self.engine.connect() as connection:
            return [
                {**dict(r), "detail": json.loads(r["detail"])}
                for r in connection.execute(query).mappings()
            ]

    # tokens -------------------------------------------------------------------------------------------------
    def add_token(self, role: Role, name: str, expires_in: float | None = None) -> str:
        """A new bearer token (shown once; only its sha256 is stored), valid ``expires_in`` seconds
        (None: until revoked). ``name`` says who holds it: no two live tokens share one."""
        if role not in ("read", "write"):
            raise RecUnlearnError(f"token role must be 'read' or 'write', got {role!r}")
        if not name or len(name) > 100 or not name.isprintable():
            raise RecUnlearnError(f"token name {name!r}: 1 to 100 printable characters")
        if expires_in is not None and not expires_in > 0:
            raise RecUnlearnError(f"a token's lifetime must be positive, got {expires_in!r} s")
        token, now = secrets.token_urlsafe(32), time.time()
        with self.write() as connection:
            if name in {t["name"] for t in self._tokens(connection, now) if t["live"]}:
                raise RecUnlearnError(
                    f"a live token is already named {name!r}; revoke it or choose another name"
                )
            connection.execute(
                insert(tokens).values(
                    token_sha256=_sha256(token),
                    name=name,
                    role=role,
                    created_at=now,
                    expires_at=None if expires_in is None else now + expires_in,
                )
            )
        return token

    def revoke_token(self, name: str) -> int:
        """Revoke the live tokens named ``name``; returns how many (0: none is)."""
        now = time.time()
        with self.write() as connection:
            return connection.execute(
                update(tokens)
                .where(
                    tokens.c.name == name,
                    tokens.c.revoked_at.is_(None),
                    or_(tokens.c.expires_at.is_(None), tokens.c.expires_at > now),
                )
                .values(revoked_at=now)
            ).rowcount

    def list_tokens(self) -> list[dict[str, Any]]:
        """Every token's name, role, times and whether it is live; never the token."""
        with self.engine.connect() as connection:
            return self._tokens(connection, time.time())

    @staticmethod
    def _tokens(connection: Connection, now: float) -> list[dict[str, Any]]:
        rows = (
            connection.execute(
                select(
                    tokens.c.name,
                    tokens.c.role,
                    tokens.c.created_at,
                    tokens.c.expires_at,
                    tokens.c.revoked_at,
                ).order_by(tokens.c.created_at)
            )
            .mappings()
            .all()
        )
        return [
            {
                **row,
                "live": row["revoked_at"] is None
                and (row["expires_at"] is None or row["expires_at"] > now),
            }
            for row in rows
        ]

    def token_role(self, token: str) -> tuple[Role, float | None] | None:
        """The role of a live token and when it expires (None: unknown, revoked or expired)."""
        with self.engine.connect() as connection:
            row = connection.execute(
                select(tokens.c.role, tokens.c.expires_at, tokens.c.revoked_at).where(
                    tokens.c.token_sha256 == _sha256(token)
                )
            ).first()
        if (
            row is None
            or row.revoked_at is not None
            or (row.expires_at is not None and row.expires_at <= time.time())
        ):
            return None
        return row.role, row.expires_at

    # helpers ------------------------------------------------------------------------------------------------
    def checkpoint(self) -> bool:
        """Make deleted rows' bytes leave the store's files.

        SQLite: copy the WAL into the database file and truncate it, so that the file's old page images
        of deleted rows are overwritten (secure_delete zeroes them) and none linger in the log.
        PostgreSQL: rewrite the interactions and requests tables (VACUUM FULL), so their files hold only
        live rows; the write-ahead log keeps the old bytes until PostgreSQL recycles and overwrites its
        segments (:meth:`log_retention`). False when a reader held it off (SQLite: a reader in the
        middle of a transaction; PostgreSQL: a lock not granted within 5 s): the worker tries again
        each pass, and ``verify`` fails its store check until it succeeds."""
        if self.engine.dialect.name == "sqlite":
            with self.engine.connect() as connection:
                done = connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").first()[0] == 0
        else:
            with self.engine.connect().execution_options(
                isolation_level="AUTOCOMMIT"
            ) as connection:
                connection.exec_driver_sql("SET lock_timeout = '5s'")
                try:
                    connection.exec_driver_sql("VACUUM (FULL) interactions, requests")
                    done = True
                except OperationalError as exc:
                    if getattr(exc.orig, "sqlstate", None) != "55P03":  # lock_not_available
                        raise
                    done = False
        self.flushed = done
        return done

    def log_retention(self) -> str | None:
        """What the store's log may still hold after :meth:`checkpoint`, with the settings that bound it
        (None for SQLite: its WAL is truncated)."""
        if self.engine.dialect.name == "sqlite":
            return None
        with self.engine.connect() as connection:
            settings = {
                name: connection.exec_driver_sql(f"SHOW {name}").scalar()
                for name in (
                    "max_wal_size",
                    "min_wal_size",
                    "wal_keep_size",
                    "checkpoint_timeout",
                    "archive_mode",
                )
            }
        shown = ", ".join(f"{k}={v}" for k, v in settings.items())
        return (
            "PostgreSQL's write-ahead log (pg_wal) still holds the deleted rows' bytes (their inserts and "
            "page images) until checkpoints recycle its segments and new log overwrites them, at most about "
            "max(max_wal_size, wal_keep_size) of further writes after the deletion; an archive "
            "(archive_mode), a replication slot, a standby and backups keep them as long as they keep "
            f"that log. Settings now: {shown}"
        )

    @staticmethod
    def _event(
        connection: Connection,
        kind: str,
        request_id: str | None,
        version: int | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        connection.execute(
            insert(events).values(
                at=time.time(),
                kind=kind,
                request_id=request_id,
                version=version,
                detail=json.dumps(detail or {}),
            )
        )

    @staticmethod
    def _record(row: Any) -> DeletionRecord:
        proof = Proof.model_validate_json(row["proof"])
        return DeletionRecord(
            request_id=row["id"],
            status=row["status"],
            request=None
            if row["spec"] is None
            else DeletionRequest.model_validate_json(row["spec"]),
            proof=proof,
            named=Named(pairs=len(proof.pairs), users=len(proof.users), items=len(proof.items)),
            received_at=row["received_at"],
            applied_at=row["applied_at"],
            published_at=row["published_at"],
            failed_at=row["failed_at"],
            version=row["version"],
            removed_version=row["removed_version"],
            removed_exact=row["removed_exact"],
            removed_at=row["removed_at"],
            repaired_at=row["repaired_at"],
            error=row["error"],
            audit=None if row["audit"] is None else json.loads(row["audit"]),
        )
