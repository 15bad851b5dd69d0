"""Hosts: the admin's scheduling choice (ready / cordoned / draining) in its own
column, so that it survives the host going offline and coming back.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06

Frozen like 0001-0003: it does not import ``tables.py``. Until now ``status`` held
the choice and the liveness in one: rows that are cordoned or draining keep that as
their choice, every other row (ready, offline) gets ``ready`` — an offline host's
earlier choice is lost, which is the bug this column fixes. Plain ``ADD COLUMN ...
DEFAULT`` then an ``UPDATE``: works on SQLite and PostgreSQL, no table rebuild.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("hosts", sa.Column("admin_status", sa.String(16), nullable=False, server_default="ready"))
    op.execute("UPDATE hosts SET admin_status = status WHERE status IN ('cordoned', 'draining')")


def downgrade() -> None:
    with op.batch_alter_table("hosts") as batch:  # SQLite: DROP COLUMN through a table copy
        batch.drop_column("admin_status")
