"""Workspaces: invitations (membership needs the invitee's consent) and per-user quota caps.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29

Frozen like 0001-0006: it does not import ``tables.py``. Existing workspaces keep their
quota rows; those without one now get the configured default (applied when read).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_LIMITS = ("gpus", "environments", "cpu_cores", "memory_gib", "storage_gib")


def upgrade() -> None:
    op.create_table(
        "workspace_invitations",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("workspace_id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("invited_by", sa.String(36), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("responded_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name="fk_workspace_invitations_workspace_id_workspaces", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_workspace_invitations_user_id_users", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_workspace_invitations"),
    )
    op.create_index("ix_workspace_invitations_workspace_id", "workspace_invitations", ["workspace_id"])
    op.create_index("ix_workspace_invitations_user_id", "workspace_invitations", ["user_id"])

    op.create_table(
        "user_quotas",
        sa.Column("user_id", sa.String(36), nullable=False),
        *(sa.Column(f"max_{r}", sa.Integer(), nullable=True) for r in _LIMITS),
        sa.Column("max_workspaces", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_user_quotas_user_id_users", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", name="pk_user_quotas"),
    )


def downgrade() -> None:
    op.drop_table("user_quotas")
    op.drop_table("workspace_invitations")
