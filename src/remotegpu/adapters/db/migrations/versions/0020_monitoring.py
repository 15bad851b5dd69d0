"""monitoring: metric samples and rollups, alert rules, alerts, silences.

Revision ID: 0020
Revises: 0016
Create Date: 2026-11-29

Frozen: it does not import ``tables.py``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0017"
branch_labels = None
depends_on = None

_F = sa.Float(precision=53)


def upgrade() -> None:
    op.create_table(
        "metric_samples",
        sa.Column("ts", _F, nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("host_id", sa.String(36), nullable=False),
        sa.Column("env_id", sa.String(36), nullable=False),
        sa.Column("workspace_id", sa.String(36), nullable=False),
        sa.Column("gpu_uuid", sa.String(64), nullable=False),
        sa.Column("value", _F, nullable=False),
    )
    op.create_index("ix_metric_samples_env_id_metric_ts", "metric_samples", ["env_id", "metric", "ts"])
    op.create_index("ix_metric_samples_host_id_metric_ts", "metric_samples", ["host_id", "metric", "ts"])
    op.create_index("ix_metric_samples_workspace_id_metric_ts", "metric_samples", ["workspace_id", "metric", "ts"])
    op.create_index("ix_metric_samples_ts", "metric_samples", ["ts"])
    op.create_table(
        "metric_rollups",
        sa.Column("resolution", sa.Integer(), nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("host_id", sa.String(36), nullable=False),
        sa.Column("env_id", sa.String(36), nullable=False),
        sa.Column("gpu_uuid", sa.String(64), nullable=False),
        sa.Column("bucket", sa.BigInteger(), nullable=False),
        sa.Column("workspace_id", sa.String(36), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("sum", _F, nullable=False),
        sa.Column("min", _F, nullable=False),
        sa.Column("max", _F, nullable=False),
        sa.PrimaryKeyConstraint("resolution", "metric", "host_id", "env_id", "gpu_uuid", "bucket", name="pk_metric_rollups"),
    )
    op.create_index("ix_metric_rollups_resolution_env_id_metric_bucket", "metric_rollups", ["resolution", "env_id", "metric", "bucket"])
    op.create_index("ix_metric_rollups_resolution_workspace_id_metric_bucket", "metric_rollups",
                    ["resolution", "workspace_id", "metric", "bucket"])
    op.create_index("ix_metric_rollups_resolution_bucket", "metric_rollups", ["resolution", "bucket"])
    op.create_table(
        "metric_compaction",
        sa.Column("resolution", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("done_until", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("resolution", name="pk_metric_compaction"),
    )
    op.create_table(
        "alert_rules",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("workspace_id", sa.String(36), nullable=True),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("op", sa.String(2), nullable=False),
        sa.Column("threshold", _F, nullable=False),
        sa.Column("for_seconds", sa.Integer(), nullable=False),
        sa.Column("keep_firing_for_seconds", sa.Integer(), nullable=False),
        sa.Column("env_id", sa.String(36), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], name="fk_alert_rules_workspace_id_workspaces", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_alert_rules"),
    )
    op.create_index("ix_alert_rules_workspace_id", "alert_rules", ["workspace_id"])
    op.create_table(
        "alerts",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("rule_id", sa.String(36), nullable=False),
        sa.Column("workspace_id", sa.String(36), nullable=True),
        sa.Column("fingerprint", sa.String(32), nullable=False),
        sa.Column("open_key", sa.String(36), nullable=False),
        sa.Column("labels", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("pending_since", _F, nullable=False),
        sa.Column("last_breach_at", _F, nullable=False),
        sa.Column("fired_at", _F, nullable=True),
        sa.Column("resolved_at", _F, nullable=True),
        sa.Column("value", _F, nullable=True),
        sa.Column("silenced", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["rule_id"], ["alert_rules.id"], name="fk_alerts_rule_id_alert_rules", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
        sa.UniqueConstraint("rule_id", "open_key", name="uq_alerts_rule_id_open_key"),
    )
    op.create_index("ix_alerts_status", "alerts", ["status"])
    op.create_index("ix_alerts_workspace_id_pending_since", "alerts", ["workspace_id", "pending_since"])
    op.create_table(
        "alert_silences",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("workspace_id", sa.String(36), nullable=True),
        sa.Column("rule_id", sa.String(36), nullable=False),
        sa.Column("matchers", sa.Text(), nullable=False),
        sa.Column("comment", sa.String(500), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], name="fk_alert_silences_workspace_id_workspaces",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_alert_silences"),
    )
    op.create_index("ix_alert_silences_workspace_id", "alert_silences", ["workspace_id"])


def downgrade() -> None:
    for table in ("alert_silences", "alerts", "alert_rules", "metric_compaction", "metric_rollups", "metric_samples"):
        op.drop_table(table)
