"""A small service home (SISA, 3 shards, tiny data) built once per session; each test gets a copy."""

from __future__ import annotations

import shutil
from dataclasses import dataclass

import pytest

from recunlearn.service.config import ServiceHome
from recunlearn.service.initialize import init_service
from tests.conformance import FAST_TRAIN
from tests.conftest import make_tiny

SISA = {"n_shards": 3, "train": {**FAST_TRAIN, "patience": 8}}


@dataclass
class Service:
    home: ServiceHome
    write_token: str
    read_token: str

    def headers(self, role: str = "write") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.write_token if role == 'write' else self.read_token}"}


@pytest.fixture(scope="session")
def built_service(tmp_path_factory) -> Service:
    home = ServiceHome(tmp_path_factory.mktemp("built") / "home")
    result = init_service(home, make_tiny(), "sisa", SISA)
    return Service(home, result.write_token, result.read_token)


@pytest.fixture
def service(built_service, tmp_path) -> Service:
    """A fresh copy of the built service (its SQLite file and versions), so tests cannot disturb each other."""
    target = tmp_path / "home"
    shutil.copytree(built_service.home.path, target)
    return Service(ServiceHome(target), built_service.write_token, built_service.read_token)


def stored_pairs(home: ServiceHome) -> set[tuple[str, str]]:
    from recunlearn.service.store import Ledger

    ledger = Ledger(home.database_url())
    try:
        with ledger.engine.connect() as connection:
            return {tuple(row) for row in connection.exec_driver_sql("SELECT user_id, item_id FROM interactions")}
    finally:
        ledger.close()


def model_pairs(model) -> set[tuple[str, str]]:
    train = model.train
    return set(zip(train.users.ids[train.user].tolist(), train.items.ids[train.item].tolist()))
