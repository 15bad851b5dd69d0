"""access: per-environment SSH credentials (reserved; filled in by the work that needs it).

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29

Frozen like 0001-0006: it does not import ``tables.py``.
"""

from __future__ import annotations

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
