"""Users: a session epoch. Access tokens carry the epoch they were issued under;
a password change, a disable or an admin "sign out everywhere" raises it, so every
access token issued before stops working at once (they are stateless otherwise).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29

Frozen like 0001-0006: it does not import ``tables.py``. Existing users get 0 (the
epoch every token issued so far implicitly carries); plain ``ADD COLUMN ... DEFAULT``
works on both SQLite and PostgreSQL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("session_epoch", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:  # SQLite: DROP COLUMN through a table copy
        batch.drop_column("session_epoch")
