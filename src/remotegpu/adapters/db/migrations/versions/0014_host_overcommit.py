"""Hosts: admin-set CPU and memory overcommit ratios (1.0 = none, the behaviour so far).

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-29

Frozen like 0001-0006: it does not import ``tables.py``.

The scheduler counts requests against capacity × ratio; containers keep their full
limits. Every existing host gets 1.0, which schedules exactly as before.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("hosts", sa.Column("cpu_overcommit", sa.Float, nullable=False, server_default="1.0"))
    op.add_column("hosts", sa.Column("memory_overcommit", sa.Float, nullable=False, server_default="1.0"))


def downgrade() -> None:
    with op.batch_alter_table("hosts") as batch:  # SQLite: DROP COLUMN through a table copy
        batch.drop_column("memory_overcommit")
        batch.drop_column("cpu_overcommit")
