"""Hosts: agents are trusted with their own host only — the admin's loopback allowance
and the GPUs an agent reported that another host owns.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29

Frozen like 0001-0006: it does not import ``tables.py``.

``allow_loopback``: an agent may report a loopback address only for a host an admin
allowed it on (domain/fleet/addresses.py). Existing hosts that already report one —
in practice the embedded host, and agents run on the server's own machine — keep
working: they get the allowance, which an admin sees and can take back by re-adding
the host. Every other row gets ``false``.

``gpu_conflicts``: uuid -> owner host id of GPUs refused from this host's inventory
because another host owns them; ``{}`` for every existing row.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_LOOPBACK = "('localhost', '::1', '127.0.0.1')"


def upgrade() -> None:
    op.add_column("hosts", sa.Column("allow_loopback", sa.Boolean, nullable=False, server_default=sa.false()))
    op.add_column("hosts", sa.Column("gpu_conflicts", sa.JSON, nullable=False, server_default="{}"))
    op.execute(
        sa.text(
            f"UPDATE hosts SET allow_loopback = :yes WHERE address IN {_LOOPBACK} OR private_address IN {_LOOPBACK}"
            " OR address LIKE '127.%' OR private_address LIKE '127.%'"
        ).bindparams(yes=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("hosts") as batch:  # SQLite: DROP COLUMN through a table copy
        batch.drop_column("gpu_conflicts")
        batch.drop_column("allow_loopback")
