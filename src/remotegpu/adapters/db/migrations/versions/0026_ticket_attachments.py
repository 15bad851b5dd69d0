"""support: ticket attachments (their bytes live in the object store, under
``support/tickets/<ticket id>/<attachment id>``; this table holds what describes them).

Revision ID: 0026
Revises: 0030
Create Date: 2026-11-29

Frozen: it does not import ``tables.py``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0026"
down_revision = "0030"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "support_attachments",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("ticket_id", sa.String(36), nullable=False),
        sa.Column("comment_id", sa.String(36), nullable=True),
        sa.Column("uploader_id", sa.String(36), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("content_type", sa.String(100), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("public", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["ticket_id"], ["support_tickets.id"], name="fk_support_attachments_ticket_id_support_tickets",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_support_attachments"),
    )
    op.create_index("ix_support_attachments_ticket_id", "support_attachments", ["ticket_id"])


def downgrade() -> None:
    op.drop_index("ix_support_attachments_ticket_id", table_name="support_attachments")
    op.drop_table("support_attachments")
