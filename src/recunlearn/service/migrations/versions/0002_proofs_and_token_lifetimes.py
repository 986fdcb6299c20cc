"""Keyed proofs instead of request ids once applied; token expiry and revocation.

``requests.spec`` becomes nullable (the ids a request named are dropped when it is applied) and
``requests.proof`` holds their keyed digests; ``spec_sha256`` (a plain hash, which a reader could test
guesses against) goes. Records written before get an empty proof here: the ledger fills it in with
the service's key when it opens the database, and drops the ids of applied records then.

Revision ID: 0002
Revises: 0001
"""

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("proof", sa.Text, nullable=False, server_default=""))
        batch.alter_column("spec", existing_type=sa.Text, nullable=True)
        batch.drop_column("spec_sha256")
    with op.batch_alter_table("requests") as batch:
        batch.alter_column("proof", existing_type=sa.Text, server_default=None)
    with op.batch_alter_table("tokens") as batch:
        batch.add_column(sa.Column("expires_at", sa.Float, nullable=True))
        batch.add_column(sa.Column("revoked_at", sa.Float, nullable=True))


def downgrade() -> None:
    connection = op.get_bind()
    dropped = connection.execute(
        sa.text("SELECT count(*) FROM requests WHERE spec IS NULL")
    ).scalar_one()
    if dropped:
        raise RuntimeError(
            f"cannot downgrade below 0002: {dropped} applied request(s) keep only keyed digests "
            "of their ids, which the older schema cannot hold"
        )
    with op.batch_alter_table("tokens") as batch:
        batch.drop_column("revoked_at")
        batch.drop_column("expires_at")
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("spec_sha256", sa.String(64), nullable=False, server_default=""))
    for request_id, spec in connection.execute(sa.text("SELECT id, spec FROM requests")).all():
        connection.execute(
            sa.text("UPDATE requests SET spec_sha256 = :h WHERE id = :i"),
            {"h": hashlib.sha256(spec.encode()).hexdigest(), "i": request_id},
        )
    with op.batch_alter_table("requests") as batch:
        batch.alter_column("spec_sha256", existing_type=sa.String(64), server_default=None)
        batch.alter_column("spec", existing_type=sa.Text, nullable=False)
        batch.drop_column("proof")
