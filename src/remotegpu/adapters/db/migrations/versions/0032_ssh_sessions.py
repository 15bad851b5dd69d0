"""SSH gateway sessions: who entered which environment through the gateway, when,
from where and for how long (the bastion's audit record).

Revision ID: 0032
Revises: 0024
Create Date: 2026-11-30

Frozen: it does not import ``tables.py``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = "0032"
down_revision = "0038"  # chained at merge (written against 0024)
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ssh_sessions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("environment_id", sa.String(36), nullable=False),
        sa.Column("workspace_id", sa.String(36), nullable=False),
        sa.Column("environment_name", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("client_address", sa.String(64), nullable=False),
        sa.Column("key_fingerprint", sa.String(128), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.String(32), nullable=False),
        sa.Column("channels", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ssh_sessions"),
    )
    op.create_index("ix_ssh_sessions_started_at", "ssh_sessions", ["started_at"])
    op.create_index("ix_ssh_sessions_workspace_id_started_at", "ssh_sessions", ["workspace_id", "started_at"])
    op.create_index("ix_ssh_sessions_environment_id", "ssh_sessions", ["environment_id"])


def downgrade() -> None:
    op.drop_table("ssh_sessions")
