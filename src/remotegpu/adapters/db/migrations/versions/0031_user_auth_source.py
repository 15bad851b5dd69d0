"""Users: where their password is checked (``auth_source``: local or ldap) and their
identity in that source (``external_id``: the directory entry's DN). Directory users
have no local password (an empty hash, which never verifies).

Revision ID: 0031
Revises: 0022
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0031"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("auth_source", sa.String(32), nullable=False, server_default="local"))
    op.add_column("users", sa.Column("external_id", sa.String(512), nullable=True))
    op.create_index("ix_users_external_identity", "users", ["auth_source", "external_id"])


def downgrade() -> None:
    op.drop_index("ix_users_external_identity", "users")
    with op.batch_alter_table("users") as batch:  # SQLite: DROP COLUMN through a table copy
        batch.drop_column("external_id")
        batch.drop_column("auth_source")
