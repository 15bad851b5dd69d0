"""Runtime ownership: the GPUs an environment had (preferred when it starts again, so
its stopped container is reused as it was), and what a host's agent holds in
quarantine (containers and volumes of its installation that the server does not know).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29

Frozen like 0001-0006: it does not import ``tables.py``. Existing rows get ``[]``.
Host ports need no change: they now stay allocated while an environment is stopped
(released on delete), under the same unique (host_id, port).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("environments", sa.Column("last_gpu_uuids", sa.JSON, nullable=False, server_default="[]"))
    op.add_column("hosts", sa.Column("quarantined", sa.JSON, nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("hosts") as batch:  # SQLite: DROP COLUMN through a table copy
        batch.drop_column("quarantined")
    with op.batch_alter_table("environments") as batch:
        batch.drop_column("last_gpu_uuids")
