"""Initial schema: identity (users, tokens, SSH keys, invites, audit) and workspaces.

Revision ID: 0001
Revises:
Create Date: 2026-11-27

Frozen copy of the schema: it does not import ``tables.py`` (which will keep
changing), so timestamps are plain ``DateTime(timezone=True)`` here; the
``UTCDateTime`` decorator in tables.py only converts values in Python.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _id(name: str = "id", nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.String(36), nullable=nullable)


def _user_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=f"fk_{table}_user_id_users", ondelete="CASCADE")


def upgrade() -> None:
    op.create_table(
        "users",
        _id(),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        _ts("created_at"),
        _ts("last_login_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("username", name="uq_users_username"),
        sa.UniqueConstraint("email", name="uq_users_email"),
    )
    op.create_index("ix_users_created_at", "users", ["created_at"])

    op.create_table(
        "api_tokens",
        _id(),
        _id("user_id"),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("token_hash", sa.String(128), nullable=False),
        sa.Column("prefix", sa.String(32), nullable=False),
        _ts("created_at"),
        _ts("expires_at", nullable=True),
        _ts("last_used_at", nullable=True),
        _ts("revoked_at", nullable=True),
        _user_fk("api_tokens"),
        sa.PrimaryKeyConstraint("id", name="pk_api_tokens"),
        sa.UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
    )
    op.create_index("ix_api_tokens_user_id", "api_tokens", ["user_id"])

    op.create_table(
        "refresh_tokens",
        _id(),
        _id("user_id"),
        _id("family_id"),
        sa.Column("token_hash", sa.String(128), nullable=False),
        _ts("created_at"),
        _ts("expires_at"),
        _ts("used_at", nullable=True),
        _ts("revoked_at", nullable=True),
        _user_fk("refresh_tokens"),
        sa.PrimaryKeyConstraint("id", name="pk_refresh_tokens"),
        sa.UniqueConstraint("token_hash", name="uq_refresh_tokens_token_hash"),
    )
    op.create_index("ix_refresh_tokens_user_id", "refresh_tokens", ["user_id"])
    op.create_index("ix_refresh_tokens_family_id", "refresh_tokens", ["family_id"])
    op.create_index("ix_refresh_tokens_expires_at", "refresh_tokens", ["expires_at"])

    op.create_table(
        "ssh_keys",
        _id(),
        _id("user_id"),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("key_type", sa.String(64), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(128), nullable=False),
        sa.Column("comment", sa.String(255), nullable=False),
        _ts("created_at"),
        _user_fk("ssh_keys"),
        sa.PrimaryKeyConstraint("id", name="pk_ssh_keys"),
        sa.UniqueConstraint("user_id", "fingerprint", name="uq_ssh_keys_user_id_fingerprint"),
    )

    op.create_table(
        "invites",
        _id(),
        sa.Column("code_hash", sa.String(128), nullable=False),
        _id("created_by"),
        _ts("created_at"),
        _ts("expires_at"),
        _id("used_by", nullable=True),
        _ts("used_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_invites"),
        sa.UniqueConstraint("code_hash", name="uq_invites_code_hash"),
    )

    op.create_table(
        "audit_events",
        _id(),
        sa.Column("action", sa.String(100), nullable=False),
        _ts("created_at"),
        _id("actor_id", nullable=True),
        sa.Column("target_type", sa.String(64), nullable=True),
        sa.Column("target_id", sa.String(64), nullable=True),
        sa.Column("ip", sa.String(64), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_events"),
    )
    op.create_index("ix_audit_events_created_at", "audit_events", ["created_at"])
    op.create_index("ix_audit_events_action", "audit_events", ["action"])
    op.create_index("ix_audit_events_actor_id", "audit_events", ["actor_id"])

    op.create_table(
        "workspaces",
        _id(),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("slug", sa.String(100), nullable=False),
        sa.Column("is_personal", sa.Boolean(), nullable=False),
        _id("created_by"),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_workspaces"),
        sa.UniqueConstraint("slug", name="uq_workspaces_slug"),
    )
    op.create_index("ix_workspaces_created_at", "workspaces", ["created_at"])

    op.create_table(
        "workspace_members",
        _id("workspace_id"),
        _id("user_id"),
        sa.Column("role", sa.String(16), nullable=False),
        _ts("created_at"),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name="fk_workspace_members_workspace_id_workspaces", ondelete="CASCADE"
        ),
        _user_fk("workspace_members"),
        sa.PrimaryKeyConstraint("workspace_id", "user_id", name="pk_workspace_members"),
    )
    op.create_index("ix_workspace_members_user_id", "workspace_members", ["user_id"])

    op.create_table(
        "workspace_quotas",
        _id("workspace_id"),
        *(sa.Column(f"max_{r}", sa.Integer(), nullable=True) for r in ("gpus", "environments", "cpu_cores", "memory_gib", "storage_gib")),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name="fk_workspace_quotas_workspace_id_workspaces", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("workspace_id", name="pk_workspace_quotas"),
    )


def downgrade() -> None:
    # Children before parents; dropping a table drops its indexes.
    for table in (
        "workspace_quotas", "workspace_members", "workspaces", "audit_events",
        "invites", "ssh_keys", "refresh_tokens", "api_tokens", "users",
    ):
        op.drop_table(table)
