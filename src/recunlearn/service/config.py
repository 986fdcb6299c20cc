"""Where a deletion service keeps its state, and the settings it runs with.

A service lives in one folder (its *home*)::

    service.json        the settings below
    ledger.sqlite       the SQL store (unless ``database_url`` points elsewhere, e.g. PostgreSQL)
    ledger.key          the secret of the ledger's keyed digests (mode 0600; kept out of the database)
    versions/v000001/   published model versions (``Unlearner.save`` output + ``manifest.json``)
    CURRENT             the name of the served version; replaced only by an atomic rename
    worker.lock         held (flock) by the one running worker and its repair process
    repair/             a repair in progress: the worker's child process writes the repaired model here
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from recunlearn.errors import ConfigError

if TYPE_CHECKING:
    from recunlearn.service.store import Ledger

HOME_ENV = "RECUNLEARN_HOME"
"""Default service home when ``--home`` is not given."""
DEFAULT_HOME = "recunlearn-service"


class ServiceConfig(BaseModel):
    """Settings of one deletion service, written by ``recunlearn service init``."""

    model_config = ConfigDict(extra="forbid")
    method: str
    """Registered unlearning method that answers deletions ('sisa', 'retrain', 'receraser', ...)."""
    method_config: dict[str, Any] = Field(default_factory=dict)
    """That method's config (model, train, n_shards, ...); validated by the method itself."""
    database_url: str | None = None
    """SQLAlchemy URL of the store; None = SQLite file ``ledger.sqlite`` in the home (WAL journal).
    Use ``postgresql+psycopg://...`` in production."""
    batch_size: int = Field(64, ge=1)
    """Most waiting requests the worker applies together (shard methods retrain each shard once)."""
    max_request_ids: int = Field(10_000, ge=1)
    """Most ids (pairs + users + items) one deletion request may name; more is refused with 413."""
    max_score_pairs: int = Field(10_000, ge=1)
    """Most pairs one POST /v1/scores may ask for."""
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    """Largest HTTP request body accepted; larger ones get 413 before being parsed."""
    poll_seconds: float = Field(0.5, gt=0)
    """How often the worker looks for waiting requests and the server for a new version."""


class ServiceHome:
    """The paths of a service home and its settings."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path or os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser().resolve()

    @property
    def config_file(self) -> Path:
        return self.path / "service.json"

    @property
    def versions(self) -> Path:
        return self.path / "versions"

    @property
    def pointer(self) -> Path:
        return self.path / "CURRENT"

    @property
    def lock_file(self) -> Path:
        return self.path / "worker.lock"

    @property
    def repair(self) -> Path:
        return self.path / "repair"

    @property
    def key_file(self) -> Path:
        return self.path / "ledger.key"

    def key(self) -> bytes:
        """The service's secret for keyed digests, made on first use (32 random bytes, hex, mode 0600)."""
        try:
            descriptor = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            text = self.key_file.read_text().strip()
            try:
                if len(text) == 64:
                    return bytes.fromhex(text)
            except ValueError:
                pass
            raise ConfigError(f"{self.key_file} is not a ledger key (64 hex digits)") from None
        except OSError as exc:
            raise ConfigError(f"cannot create the ledger key {self.key_file}: {exc}") from None
        text = secrets.token_hex(32)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return bytes.fromhex(text)

    def ledger(self, config: ServiceConfig | None = None) -> Ledger:
        """The service's ledger, with its key."""
        from recunlearn.service.store import Ledger

        return Ledger(self.database_url(config), key=self.key())

    def database_url(self, config: ServiceConfig | None = None) -> str:
        config = config or self.config()
        return config.database_url or f"sqlite:///{self.path / 'ledger.sqlite'}"

    def config(self) -> ServiceConfig:
        if not self.config_file.is_file():
            raise ConfigError(
                f"{self.path} is not a service home (no service.json); "
                "create one with `recunlearn service init`"
            )
        try:
            return ServiceConfig.model_validate(json.loads(self.config_file.read_text()))
        except (ValidationError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{self.config_file}: {exc}") from None

    def write_config(self, config: ServiceConfig) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(json.dumps(config.model_dump(mode="json"), indent=1))
