"""The deletion service's commands: ``serve``, ``worker``, ``verify`` and ``service init|token|status|migrate``."""

from __future__ import annotations

import json
from pathlib import Path

import tomllib
import typer

from recunlearn.cli._app import app
from recunlearn.errors import ConfigError

service_app = typer.Typer(
    help="Set up and inspect a deletion service (see docs/service.md).", no_args_is_help=True
)
app.add_typer(service_app, name="service")

HomeOption = typer.Option(
    None, "--home", help="Service folder (default: $RECUNLEARN_HOME, else ./recunlearn-service)."
)


def _home(path: Path | None):
    from recunlearn.service.config import ServiceHome

    return ServiceHome(path)


def _method_config(text: str | None) -> dict:
    """A TOML or JSON file, or inline JSON."""
    if not text:
        return {}
    path = Path(text)
    if not path.is_file() and not text.lstrip().startswith("{"):
        raise ConfigError(f"--config {text!r}: no such file (inline JSON starts with '{{')")
    try:
        if path.is_file():
            return (
                tomllib.loads(path.read_text())
                if path.suffix == ".toml"
                else json.loads(path.read_text())
            )
        return json.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"--config: not a TOML/JSON file nor inline JSON ({exc})") from None


@service_app.command("init")
def init(
    data: str = typer.Option(
        ..., "--data", help="Dataset name (ml-100k, synthetic, ...) or path in a known format."
    ),
    method: str = typer.Option(
        "sisa", "--method", help="Registered unlearning method (see `recunlearn methods`)."
    ),
    config: str | None = typer.Option(
        None,
        "--config",
        help="Method config: TOML/JSON file or inline JSON, "
        'e.g. \'{"n_shards": 4, "train": {"max_epochs": 20}}\'.',
    ),
    database_url: str | None = typer.Option(
        None, "--database-url", help="SQLAlchemy URL; default SQLite in the home."
    ),
    threshold: float | None = typer.Option(
        None,
        "--threshold",
        help="Label = rating > threshold (3 for MovieLens); "
        "default: the loader's labels (all positive for explicit ratings).",
    ),
    home: Path | None = HomeOption,
) -> None:
    """Store the data, train the first model on all of it, publish it, print two API tokens."""
    from recunlearn.cli._options import writable_folder
    from recunlearn.data import binarize
    from recunlearn.data.registry import load_dataset
    from recunlearn.service.initialize import init_service

    location = _home(home)
    writable_folder(location.path, "--home", create=False)
    table = load_dataset(data)
    if threshold is not None:
        table = binarize(table, threshold)
    result = init_service(
        location, table, method, _method_config(config), database_url=database_url
    )
    typer.echo(
        f"service in {result.home.path}: {result.rows:,} interactions, {method} trained in "
        f"{result.fit_seconds:.1f} s, serving {result.version}"
    )
    typer.echo(f"write token (deletions + reads): {result.write_token}")
    typer.echo(f"read token (recommendations, scores, status): {result.read_token}")
    typer.echo(
        "tokens are shown once; `recunlearn service token --name NAME` makes more (--list, --revoke NAME)"
    )


@service_app.command("token")
def token(
    role: str = typer.Option("read", help="'read' or 'write'."),
    name: str | None = typer.Option(
        None, help="Who holds it (unique among live tokens); required to create one."
    ),
    expires_days: float | None = typer.Option(
        None, "--expires-days", help="Lifetime in days (default: until revoked)."
    ),
    revoke: str | None = typer.Option(
        None, "--revoke", help="Revoke the live token(s) with this name."
    ),
    list_: bool = typer.Option(
        False, "--list", help="List tokens by name (never the tokens themselves)."
    ),
    home: Path | None = HomeOption,
) -> None:
    """Create an API bearer token (printed once; only its hash is stored), revoke one, or list them."""
    from datetime import datetime, timezone

    if sum((name is not None, revoke is not None, list_)) != 1:
        raise ConfigError("give one of --name NAME (create), --revoke NAME or --list")
    ledger = _home(home).ledger()
    try:
        if list_:

            def when(t):
                return (
                    "-"
                    if t is None
                    else datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
                )

            for t in ledger.list_tokens():
                state = (
                    "live" if t["live"] else "revoked" if t["revoked_at"] is not None else "expired"
                )
                typer.echo(
                    f"{t['name']}\t{t['role']}\t{state}\tcreated {when(t['created_at'])}"
                    f"\texpires {when(t['expires_at'])}"
                )
        elif revoke is not None:
            revoked = ledger.revoke_token(revoke)
            if not revoked:
                raise ConfigError(f"no live token is named {revoke!r} (see --list)")
            typer.echo(
                f"revoked {revoked} token(s) named {revoke!r} (servers refuse them within 10 s)"
            )
        else:
            if expires_days is not None and not expires_days > 0:
                raise ConfigError(f"--expires-days must be positive, got {expires_days:g}")
            typer.echo(
                ledger.add_token(role, name, None if expires_days is None else expires_days * 86400)
            )
    finally:
        ledger.close()


@service_app.command("status")
def status(home: Path | None = HomeOption) -> None:
    """Served version and requests by status."""
    from recunlearn.service.versions import current_name

    location = _home(home)
    ledger = location.ledger()
    typer.echo(
        json.dumps(
            {
                "served_version": current_name(location),
                "method": location.config().method,
                "interactions": ledger.count_interactions(),
                "requests": ledger.by_status(),
            },
            indent=1,
        )
    )
    ledger.close()


@service_app.command("migrate")
def migrate(home: Path | None = HomeOption) -> None:
    """Upgrade the database schema to the newest migration (serve and worker also do this at start)."""
    location = _home(home)
    location.ledger().close()
    typer.echo(f"schema of {location.database_url()} is up to date")


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, min=0, max=65535, help="Port."),
    worker: bool = typer.Option(
        False, "--worker/--no-worker", help="Also process deletions in this process."
    ),
    home: Path | None = HomeOption,
) -> None:
    """Start the HTTP API (uvicorn). Run `recunlearn worker` beside it, or pass --worker."""
    import uvicorn

    from recunlearn.service.api import create_app

    uvicorn.run(create_app(_home(home), worker=worker), host=host, port=port, log_level="info")


@app.command("worker")
def worker_command(
    drain: bool = typer.Option(
        False, "--drain", help="Exit once no request is waiting (instead of polling)."
    ),
    home: Path | None = HomeOption,
) -> None:
    """Process deletion requests: forget, publish a new model version, record the audit."""
    import logging

    from recunlearn.service.worker import Worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    handled = Worker(_home(home)).run(drain=drain)
    typer.echo(f"settled {handled} request(s)")


@app.command()
def verify(
    request_id: str = typer.Argument(..., help="The deletion request's id."),
    retrain: bool = typer.Option(
        True,
        "--retrain/--no-retrain",
        help="Exact methods: retrain the changed parts from scratch and compare bitwise.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the checks as JSON."),
    pair: list[str] | None = typer.Option(
        None,
        "--pair",
        help="USER,ITEM: check that the audit lists this "
        "pair as removed (by its keyed digest); repeatable.",
    ),
    home: Path | None = HomeOption,
) -> None:
    """Check that a deletion request's data is gone from the store, the served version and every data file
    (exit code 1 if any check fails; notes say what the checks cannot see)."""
    from recunlearn.service.audit import describe, verify_request

    pairs = []
    for text in pair or []:
        user, comma, item = text.partition(",")
        if not comma or not user or not item:
            raise ConfigError(f"--pair {text!r}: give USER,ITEM")
        pairs.append((user, item))
    result = verify_request(_home(home), request_id, retrain=retrain, pairs=tuple(pairs))
    typer.echo(
        json.dumps({**result.model_dump(), "ok": result.ok}, indent=1)
        if as_json
        else describe(result)
    )
    raise typer.Exit(0 if result.ok else 1)
