"""Two-phase deletion: a request is ``removed`` (a version that no longer uses its data is served),
then ``repaired`` (the exactly retrained version is recorded), then ``published`` (it is served).

``requests`` gains ``removed_version`` (the version that first served without the request's data),
``removed_exact`` (whether that removal was exact), ``removed_at`` and ``repaired_at``; ``versions``
gains ``kind``: 'removal' (parts set aside or an approximate update, requests pending repair),
'repair' (the pending requests retrained exactly) or 'full' (both at once, as every version before).
An ``applied`` request (its full version recorded, not yet served) becomes ``received`` with its
``removed_version`` set: publishing that version makes it ``published``.

Revision ID: 0003
Revises: 0002
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("removed_version", sa.Integer, nullable=True))
        batch.add_column(sa.Column("removed_exact", sa.Boolean, nullable=True))
        batch.add_column(sa.Column("removed_at", sa.Float, nullable=True))
        batch.add_column(sa.Column("repaired_at", sa.Float, nullable=True))
    with op.batch_alter_table("versions") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="full"))
    with op.batch_alter_table("versions") as batch:
        batch.alter_column("kind", existing_type=sa.String(16), server_default=None)
    connection = op.get_bind()
    rows = connection.execute(
        sa.text(
            "SELECT id, status, version, applied_at, published_at, audit FROM requests "
            "WHERE status IN ('applied', 'published')"
        )
    ).all()
    for request_id, status, version, applied_at, published_at, audit in rows:
        exact = None if audit is None else json.loads(audit).get("exact")
        connection.execute(
            sa.text(
                "UPDATE requests SET status = :status, removed_version = :version, "
                "removed_exact = :exact, removed_at = :published, repaired_at = :applied "
                "WHERE id = :id"
            ),
            {
                "status": "received" if status == "applied" else "published",
                "version": version,
                "exact": exact,
                "published": published_at,
                "applied": applied_at if status == "published" else None,
                "id": request_id,
            },
        )


def downgrade() -> None:
    connection = op.get_bind()
    two_phase = connection.execute(
        sa.text("SELECT count(*) FROM versions WHERE kind <> 'full'")
    ).scalar_one()
    if two_phase:
        raise RuntimeError(
            f"cannot downgrade below 0003: {two_phase} version(s) are removal or repair versions, "
            "which the older schema cannot describe"
        )
    connection.execute(
        sa.text(
            "UPDATE requests SET status = 'applied' "
            "WHERE status = 'received' AND removed_version IS NOT NULL"
        )
    )
    with op.batch_alter_table("versions") as batch:
        batch.drop_column("kind")
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("repaired_at")
        batch.drop_column("removed_at")
        batch.drop_column("removed_exact")
        batch.drop_column("removed_version")
