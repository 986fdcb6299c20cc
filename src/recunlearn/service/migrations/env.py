"""Alembic environment: migrate the connection handed over by ``migrate()``, or ``sqlalchemy.url``.

Outside Python, ``recunlearn service migrate --home H`` runs the same upgrade.
"""

from alembic import context
from sqlalchemy import create_engine

config = context.config
connection = config.attributes.get("connection")


def _run(connection) -> None:
    context.configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    _run(connection)
else:
    with create_engine(config.get_main_option("sqlalchemy.url")).connect() as own:
        _run(own)
        own.commit()
