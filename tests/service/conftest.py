"""Service homes for the tests, on SQLite and on PostgreSQL.

Tests that take ``service`` or ``store_url`` run once per store. A PostgreSQL test gets its own
database, created on the server of ``RECUNLEARN_TEST_POSTGRES_URL`` and dropped after it, so tests
cannot disturb each other; without a server they fail (``make test`` starts one), never skip.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections import Counter
from dataclasses import dataclass

import pytest
from sqlalchemy import create_engine, make_url
from sqlalchemy.exc import OperationalError

from recunlearn.service.config import ServiceHome
from recunlearn.service.initialize import init_service
from recunlearn.testing import FAST_TRAIN
from tests.conftest import make_tiny

SISA = {"n_shards": 3, "train": {**FAST_TRAIN, "patience": 8}}
POSTGRES_ENV = "RECUNLEARN_TEST_POSTGRES_URL"
POSTGRES_URL = os.environ.get(POSTGRES_ENV, "postgresql+psycopg://postgres@127.0.0.1:5432/test")
STORES = ("sqlite", "postgres")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", f"postgres: runs against the PostgreSQL server of ${POSTGRES_ENV}"
    )


def pytest_collection_modifyitems(items):
    for item in items:
        if (
            getattr(item, "callspec", None) is not None
            and item.callspec.params.get("store") == "postgres"
        ):
            item.add_marker("postgres")


def pytest_terminal_summary(terminalreporter):
    """One line per store, so that a run shows how many service tests PostgreSQL took part in."""
    counts = {store: Counter() for store in ("SQLite", "PostgreSQL")}
    for outcome in ("passed", "failed", "error", "skipped", "xfailed"):
        for report in terminalreporter.stats.get(outcome, []):
            nodeid = getattr(report, "nodeid", "")
            if nodeid.startswith("tests/service/") and (
                report.when == "call" or outcome != "passed"
            ):
                counts["PostgreSQL" if "postgres" in report.keywords else "SQLite"][outcome] += 1
    if any(counts.values()):
        terminalreporter.write_line(
            "service tests by store: "
            + "; ".join(
                f"{store} " + ", ".join(f"{n} {outcome}" for outcome, n in sorted(c.items()))
                if c
                else f"{store} none"
                for store, c in counts.items()
            )
            + f" (PostgreSQL at {make_url(POSTGRES_URL).render_as_string()})"
        )


class PostgresServer:
    """Creates and drops uniquely named databases on the test server."""

    def __init__(self, url: str):
        self.url = make_url(url)
        self.admin = create_engine(self.url, isolation_level="AUTOCOMMIT")

    def create(self, template: str | None = None) -> str:
        name = f"recunlearn_test_{uuid.uuid4().hex[:12]}"
        with self.admin.connect() as connection:
            connection.exec_driver_sql(
                f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")
            )
        return self.url.set(database=name).render_as_string(hide_password=False)

    def drop(self, url: str) -> None:
        with self.admin.connect() as connection:
            connection.exec_driver_sql(
                f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'
            )


@pytest.fixture(scope="session")
def postgres() -> PostgresServer:
    server = PostgresServer(POSTGRES_URL)
    try:
        server.admin.connect().close()
    except OperationalError as exc:
        pytest.fail(
            f"no PostgreSQL server at {server.url.render_as_string()} ({str(exc).splitlines()[0]}); "
            f"`make test` installs and starts one, or set {POSTGRES_ENV}",
            pytrace=False,
        )
    yield server
    server.admin.dispose()


@pytest.fixture(params=STORES)
def store(request) -> str:
    return request.param


@pytest.fixture
def store_url(store, request, tmp_path) -> str:
    """An empty database of the store under test."""
    if store == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.sqlite'}"
        return
    server = request.getfixturevalue("postgres")
    url = server.create()
    yield url
    server.drop(url)


@dataclass
class Service:
    home: ServiceHome
    write_token: str
    read_token: str

    def headers(self, role: str = "write") -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.write_token if role == 'write' else self.read_token}"
        }


@pytest.fixture(scope="session")
def built_services(tmp_path_factory, request):
    """Builds the service once per store (on PostgreSQL into a template database) when first asked."""
    built: dict[str, tuple[Service, str | None]] = {}
    servers: list[PostgresServer] = []

    def build(store: str) -> tuple[Service, str | None]:
        if store not in built:
            if store == "postgres" and not servers:
                servers.append(request.getfixturevalue("postgres"))
            template = servers[0].create() if store == "postgres" else None
            home = ServiceHome(tmp_path_factory.mktemp(f"built-{store}") / "home")
            result = init_service(home, make_tiny(), "sisa", SISA, database_url=template)
            built[store] = Service(home, result.write_token, result.read_token), template
        return built[store]

    yield build
    for _service, template in built.values():
        if template is not None:
            servers[0].drop(template)


@pytest.fixture
def service(store, built_services, tmp_path, request) -> Service:
    """A fresh copy of the built service (its folder, and its SQLite file or PostgreSQL database), so
    tests cannot disturb each other."""
    built, template = built_services(store)
    target = tmp_path / "home"
    shutil.copytree(built.home.path, target)
    home = ServiceHome(target)
    if template is not None:
        server = request.getfixturevalue("postgres")
        url = server.create(template=make_url(template).database)
        request.addfinalizer(lambda: server.drop(url))
        config = json.loads(home.config_file.read_text())
        home.config_file.write_text(json.dumps({**config, "database_url": url}))
    return Service(home, built.write_token, built.read_token)


def stored_pairs(home: ServiceHome) -> set[tuple[str, str]]:
    ledger = home.ledger()
    try:
        with ledger.engine.connect() as connection:
            return {
                tuple(row)
                for row in connection.exec_driver_sql("SELECT user_id, item_id FROM interactions")
            }
    finally:
        ledger.close()


def model_pairs(model) -> set[tuple[str, str]]:
    train = model.train
    return set(zip(train.users.ids[train.user].tolist(), train.items.ids[train.item].tolist()))
