"""support: tickets, their comments (public replies, internal notes), the support team;
notifications: users' phone numbers, the SMS send log, SMS and digest preferences.

Revision ID: 0021
Revises: 0016
Create Date: 2026-11-29

Frozen: it does not import ``tables.py``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0018"
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "support_tickets",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("requester_id", sa.String(36), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("workspace_id", sa.String(36), nullable=True),
        sa.Column("environment_id", sa.String(36), nullable=True),
        sa.Column("assignee_id", sa.String(36), nullable=True),
        _ts("created_at", False),
        _ts("updated_at", False),
        _ts("first_response_at"),
        _ts("solved_at"),
        _ts("closed_at"),
        _ts("pending_since"),
        _ts("reminded_at"),
        sa.Column("sla_elapsed", sa.Float(), nullable=False),
        _ts("sla_running_since"),
        sa.Column("sla_alerts", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["requester_id"], ["users.id"], name="fk_support_tickets_requester_id_users", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_support_tickets"),
    )
    op.create_index("ix_support_tickets_requester_id_updated_at", "support_tickets", ["requester_id", "updated_at"])
    op.create_index("ix_support_tickets_status_updated_at", "support_tickets", ["status", "updated_at"])
    op.create_table(
        "support_comments",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("ticket_id", sa.String(36), nullable=False),
        sa.Column("author_id", sa.String(36), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("public", sa.Boolean(), nullable=False),
        sa.Column("by_staff", sa.Boolean(), nullable=False),
        _ts("created_at", False),
        sa.ForeignKeyConstraint(["ticket_id"], ["support_tickets.id"], name="fk_support_comments_ticket_id_support_tickets",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_support_comments"),
    )
    op.create_index("ix_support_comments_ticket_id_created_at", "support_comments", ["ticket_id", "created_at"])
    op.create_table(
        "support_agents",
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("added_by", sa.String(36), nullable=False),
        _ts("added_at", False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_support_agents_user_id_users", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", name="pk_support_agents"),
    )

    op.create_table(
        "user_phones",
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("number", sa.String(16), nullable=True),
        _ts("verified_at"),
        sa.Column("pending_number", sa.String(16), nullable=True),
        sa.Column("code_hash", sa.String(64), nullable=True),
        _ts("code_expires_at"),
        sa.Column("code_attempts", sa.Integer(), nullable=False),
        _ts("updated_at"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_user_phones_user_id_users", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", name="pk_user_phones"),
    )
    op.create_table(
        "sms_sends",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("number", sa.String(64), nullable=False),
        sa.Column("template", sa.String(32), nullable=False),
        _ts("sent_at", False),
        sa.PrimaryKeyConstraint("id", name="pk_sms_sends"),
    )
    op.create_index("ix_sms_sends_number_template_sent_at", "sms_sends", ["number", "template", "sent_at"])
    with op.batch_alter_table("notification_preferences") as batch:
        batch.add_column(sa.Column("sms", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("digest", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("notification_preferences") as batch:
        batch.drop_column("digest")
        batch.drop_column("sms")
    op.drop_table("sms_sends")
    op.drop_table("user_phones")
    op.drop_table("support_agents")
    op.drop_table("support_comments")
    op.drop_table("support_tickets")
