"""Create a service home: store the interactions, train the first model, publish it as version 1."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from recunlearn.data.interactions import Interactions
from recunlearn.errors import ConfigError
from recunlearn.service.config import ServiceConfig, ServiceHome
from recunlearn.service.versions import point_to, stage_version
from recunlearn.unlearn.base import get_method, make_config


@dataclass(frozen=True)
class InitResult:
    """What ``init_service`` made; the tokens are shown once (only their hashes are stored)."""

    home: ServiceHome
    version: str
    rows: int
    write_token: str
    read_token: str
    fit_seconds: float


def init_service(
    home: ServiceHome,
    data: Interactions,
    method: str,
    method_config: dict[str, Any] | None = None,
    **settings: Any,
) -> InitResult:
    """Store ``data``, fit ``method`` on all of it and publish the model as the first version.

    The service trains without validation data: every part then depends only on its own training rows
    (no early-stopping choice made with data that may later be deleted), so the epoch count is fixed by
    ``train.max_epochs`` in ``method_config``. ``settings`` are further :class:`ServiceConfig` fields.
    """
    if home.config_file.exists():
        raise ConfigError(f"{home.path} already holds a service (service.json exists)")
    config = make_config(
        ServiceConfig, None, {"method": method, "method_config": method_config or {}, **settings}
    )
    unlearner = get_method(method)(
        config.method_config
    )  # validates the method's config before any work
    if unlearner.data_kind != "interactions":
        raise ConfigError(
            f"method {method!r} works on {unlearner.data_kind}; the service serves interactions"
        )
    train = getattr(unlearner.config, "train", None)
    if getattr(train, "loss", "bce") == "bce" and len(np.unique(data.label)) < 2:
        raise ConfigError(
            f"every training label is {data.label[0]:g}: a model trained with BCE learns nothing "
            "from one class; give a rating threshold (--threshold, e.g. 3 for MovieLens) or train "
            "with loss 'bpr'"
        )
    home.path.mkdir(parents=True, exist_ok=True)
    ledger = home.ledger(config)
    try:
        if ledger.count_interactions() or ledger.latest_version_number():
            raise ConfigError(
                f"the database {home.database_url(config)} already holds a service's data"
            )
        ledger.add_interactions(data)
        model = unlearner.fit(data)
        name, manifest_sha256 = stage_version(home, model, 1, [])
        ledger.record_initial_version(1, name, manifest_sha256)
        point_to(home, name)
        write_token = ledger.add_token("write", "init-write")
        read_token = ledger.add_token("read", "init-read")
    finally:
        ledger.close()
    home.write_config(config)
    return InitResult(home, name, len(data), write_token, read_token, model.fit_seconds)
