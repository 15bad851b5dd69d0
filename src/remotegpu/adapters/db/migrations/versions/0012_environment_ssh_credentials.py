"""Environments: per-environment SSH credentials made by the server — the host key's
private half and the web terminal's client key pair (private halves sealed under the
server's secret; see application/environments/credentials.py).

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29

Frozen like 0001-0006: it does not import ``tables.py``.

Existing rows: the ``ssh_host_key`` the agents read from inside the containers is
cleared (the container's root could put any key there: it was never to be trusted).
Keys are not generated here (no server secret in a migration): an environment gets its
pair on the first heartbeat of its host that wants it running — at once for running
environments, at the next start for stopped ones — and the agent installs the host key
then; its known_hosts line (the access info) is new from then on.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("environments", sa.Column("ssh_host_key_sealed", sa.Text, nullable=False, server_default=""))
    op.add_column("environments", sa.Column("ssh_client_key", sa.String(1024), nullable=False, server_default=""))
    op.add_column("environments", sa.Column("ssh_client_key_sealed", sa.Text, nullable=False, server_default=""))
    op.execute("UPDATE environments SET ssh_host_key = ''")


def downgrade() -> None:
    with op.batch_alter_table("environments") as batch:  # SQLite: DROP COLUMN through a table copy
        batch.drop_column("ssh_client_key_sealed")
        batch.drop_column("ssh_client_key")
        batch.drop_column("ssh_host_key_sealed")
