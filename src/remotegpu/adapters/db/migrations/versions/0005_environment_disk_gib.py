"""Environments: the size of their disk (GiB), chosen at create and counted against
the workspace's ``max_storage_gib`` until the environment is deleted.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07

Frozen like 0001-0004: it does not import ``tables.py``. Existing rows get 50 (the
create form's default); plain ``ADD COLUMN ... DEFAULT`` works on both SQLite and
PostgreSQL, no table rebuild.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("environments", sa.Column("disk_gib", sa.Integer, nullable=False, server_default="50"))


def downgrade() -> None:
    with op.batch_alter_table("environments") as batch:  # SQLite: DROP COLUMN through a table copy
        batch.drop_column("disk_gib")
