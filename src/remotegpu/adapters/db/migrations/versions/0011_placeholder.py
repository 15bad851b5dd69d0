"""fleet: agent trust, token rotation, host removal (reserved; filled in by the work that needs it).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29

Frozen like 0001-0006: it does not import ``tables.py``.
"""

from __future__ import annotations

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
