"""SSH gateway: where the recording of a session is kept (the object key of its
asciicast in the platform's object storage; NULL when the session was not recorded).

The audit row names the object: the session list says which sessions have a recording
without asking the object store per row, and the replay reads the key from the row.

Revision ID: 0040
Revises: 0039
Create Date: 2026-11-30

Frozen: it does not import ``tables.py``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0040"
down_revision = "0039"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("ssh_sessions", sa.Column("recording", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ssh_sessions") as batch:  # SQLite: DROP COLUMN through a table copy
        batch.drop_column("recording")
