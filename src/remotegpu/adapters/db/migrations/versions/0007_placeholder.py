"""identity: sessions, login throttling, refresh rotation (reserved; filled in by the work that needs it).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29

Frozen like 0001-0006: it does not import ``tables.py``.
"""

from __future__ import annotations

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
