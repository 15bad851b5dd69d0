"""Hosts: the private address the platform reaches their private services on
(JupyterLab, the web terminal's SSH bridge), as the agent reports it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05

Frozen like 0001/0002: it does not import ``tables.py``. Existing rows get ``""``
(unknown until the host's agent reports one); plain ``ADD COLUMN ... DEFAULT`` works
on both SQLite and PostgreSQL, no table rebuild.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("hosts", sa.Column("private_address", sa.String(255), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("hosts") as batch:  # SQLite: DROP COLUMN through a table copy
        batch.drop_column("private_address")
