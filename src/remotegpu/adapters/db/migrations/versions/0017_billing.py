"""billing: prices, meter readings, usage segments, the ledger, wallets, bills, plans.

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-29

Frozen: it does not import ``tables.py``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0021"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "billing_prices",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("unit_price", sa.BigInteger(), nullable=False),
        sa.Column("effective_from", _TS, nullable=False),
        sa.Column("created_by", sa.String(36), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_billing_prices"),
    )
    op.create_index("ix_billing_prices_kind_model_effective_from", "billing_prices", ["kind", "model", "effective_from"])
    op.create_table(
        "meter_readings",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("environment_id", sa.String(36), nullable=False),
        sa.Column("workspace_id", sa.String(36), nullable=False),
        sa.Column("owner_id", sa.String(36), nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("gpu_model", sa.String(200), nullable=False),
        sa.Column("gpu_count", sa.Integer(), nullable=False),
        sa.Column("with_gpu", sa.Boolean(), nullable=False),
        sa.Column("cpu_cores", sa.Integer(), nullable=False),
        sa.Column("memory_gib", sa.Integer(), nullable=False),
        sa.Column("disk_gib", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_meter_readings"),
    )
    op.create_index("ix_meter_readings_environment_id_at", "meter_readings", ["environment_id", "at"])
    op.create_table(
        "meters",
        sa.Column("environment_id", sa.String(36), nullable=False),
        sa.Column("workspace_id", sa.String(36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("metered_version", sa.Integer(), nullable=False),
        sa.Column("open_segments", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("environment_id", name="pk_meters"),
    )
    op.create_index("ix_meters_version_metered_version", "meters", ["version", "metered_version"])
    op.create_table(
        "usage_segments",
        sa.Column("key", sa.String(300), nullable=False),
        sa.Column("environment_id", sa.String(36), nullable=False),
        sa.Column("workspace_id", sa.String(36), nullable=False),
        sa.Column("owner_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("start_at", _TS, nullable=False),
        sa.Column("end_at", _TS, nullable=True),
        sa.Column("price_id", sa.String(64), nullable=True),
        sa.Column("unit_price", sa.BigInteger(), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("rated_until", _TS, nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("charged", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_usage_segments"),
    )
    op.create_index("ix_usage_segments_workspace_id_period", "usage_segments", ["workspace_id", "period"])
    op.create_index("ix_usage_segments_environment_id", "usage_segments", ["environment_id"])
    op.create_table(
        "ledger_entries",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("workspace_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("actor_id", sa.String(36), nullable=True),
        sa.Column("reference", sa.String(300), nullable=True),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("expires_at", _TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_entries"),
        sa.UniqueConstraint("reference", name="uq_ledger_entries_reference"),
    )
    op.create_index("ix_ledger_entries_workspace_id_at", "ledger_entries", ["workspace_id", "at"])
    op.create_table(
        "wallets",
        sa.Column("workspace_id", sa.String(36), nullable=False),
        sa.Column("warn_below", sa.BigInteger(), nullable=False),
        sa.Column("warned", sa.Boolean(), nullable=False),
        sa.Column("arrears_since", _TS, nullable=True),
        sa.Column("disk_warnings", sa.Integer(), nullable=False),
        sa.Column("budget_monthly", sa.BigInteger(), nullable=True),
        sa.Column("budget_hard_stop", sa.Boolean(), nullable=False),
        sa.Column("budget_notified", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", name="pk_wallets"),
    )
    op.create_table(
        "bills",
        sa.Column("workspace_id", sa.String(36), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("lines", sa.Text(), nullable=False),
        sa.Column("finalized_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "period", name="pk_bills"),
    )
    op.create_table(
        "billing_plans",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("workspace_id", sa.String(36), nullable=False),
        sa.Column("gpu_model", sa.String(200), nullable=False),
        sa.Column("gpu_count", sa.Integer(), nullable=False),
        sa.Column("term", sa.String(8), nullable=False),
        sa.Column("price", sa.BigInteger(), nullable=False),
        sa.Column("starts_at", _TS, nullable=False),
        sa.Column("ends_at", _TS, nullable=False),
        sa.Column("term_started_at", _TS, nullable=False),
        sa.Column("auto_renew", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_by", sa.String(36), nullable=False),
        sa.Column("terms", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_billing_plans"),
    )
    op.create_index("ix_billing_plans_workspace_id", "billing_plans", ["workspace_id"])


def downgrade() -> None:
    for table in ("billing_plans", "bills", "wallets", "ledger_entries", "usage_segments", "meters", "meter_readings", "billing_prices"):
        op.drop_table(table)
