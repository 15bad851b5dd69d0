"""Environments: the public key their sshd presents, as the agent read it from the
container, so users can pin it (known_hosts) and the web terminal's SSH bridge can
check it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08

Frozen like 0001-0005: it does not import ``tables.py``. Existing rows get "" (not
known yet: the next heartbeat fills it in).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("environments", sa.Column("ssh_host_key", sa.String(1024), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("environments") as batch:  # SQLite: DROP COLUMN through a table copy
        batch.drop_column("ssh_host_key")
