"""Initial schema: interactions, requests, versions, events, tokens.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "interactions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.Column("item_id", sa.String(200), nullable=False),
        sa.Column("label", sa.Float, nullable=False),
        sa.Column("rating", sa.Float, nullable=True),
        sa.Column("timestamp", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_interactions_user_item", "interactions", ["user_id", "item_id"])
    op.create_index("ix_interactions_item", "interactions", ["item_id"])
    op.create_table(
        "requests",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("spec_sha256", sa.String(64), nullable=False),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("applied_at", sa.Float, nullable=True),
        sa.Column("published_at", sa.Float, nullable=True),
        sa.Column("failed_at", sa.Float, nullable=True),
        sa.Column("version", sa.Integer, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("audit", sa.Text, nullable=True),
    )
    op.create_index("ix_requests_status", "requests", ["status"])
    op.create_table(
        "versions",
        sa.Column("number", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("published_at", sa.Float, nullable=True),
        sa.Column("manifest_sha256", sa.String(64), nullable=False),
        sa.Column("request_ids", sa.Text, nullable=False),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("request_id", sa.String(200), nullable=True),
        sa.Column("version", sa.Integer, nullable=True),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_events_request_id", "events", ["request_id"])
    op.create_table(
        "tokens",
        sa.Column("token_sha256", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for table in ("tokens", "events", "versions", "requests", "interactions"):
        op.drop_table(table)
