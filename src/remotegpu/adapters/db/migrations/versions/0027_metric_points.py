"""monitoring: raw samples as (series number, ts, value) rows, and late-bucket marks.

``metric_samples`` (seven columns, four indexes) becomes ``metric_series`` (labels, one
row per series) + ``metric_points`` (series_id, ts, value; one index besides ts): a
raw row costs a third of what it did to COPY in. ``metric_late_buckets`` lists rolled-up
buckets a late sample fell into, for compaction to recompute. Existing raw samples are
carried over (and back on downgrade).

Revision ID: 0027
Revises: 0028
Create Date: 2026-11-29

Frozen: it does not import ``tables.py``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0027"
down_revision = "0028"
branch_labels = None
depends_on = None

_F = sa.Float(precision=53)


def upgrade() -> None:
    op.create_table(
        "metric_series",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("host_id", sa.String(36), nullable=False),
        sa.Column("env_id", sa.String(36), nullable=False),
        sa.Column("workspace_id", sa.String(36), nullable=False),
        sa.Column("gpu_uuid", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_metric_series"),
        sa.UniqueConstraint("metric", "host_id", "env_id", "gpu_uuid", name="uq_metric_series_metric_host_id_env_id_gpu_uuid"),
    )
    op.create_index("ix_metric_series_env_id_metric", "metric_series", ["env_id", "metric"])
    op.create_index("ix_metric_series_host_id_metric", "metric_series", ["host_id", "metric"])
    op.create_index("ix_metric_series_workspace_id_metric", "metric_series", ["workspace_id", "metric"])
    op.create_table(
        "metric_points",
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.Column("ts", _F, nullable=False),
        sa.Column("value", _F, nullable=False),
    )
    op.create_index("ix_metric_points_series_id_ts", "metric_points", ["series_id", "ts"])
    op.create_index("ix_metric_points_ts", "metric_points", ["ts"])
    op.create_table(
        "metric_late_buckets",
        sa.Column("resolution", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("bucket", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("resolution", "bucket", name="pk_metric_late_buckets"),
    )
    op.execute("INSERT INTO metric_series (metric, host_id, env_id, workspace_id, gpu_uuid) "
               "SELECT metric, host_id, env_id, max(workspace_id), gpu_uuid FROM metric_samples "
               "GROUP BY metric, host_id, env_id, gpu_uuid")
    op.execute("INSERT INTO metric_points (series_id, ts, value) SELECT s.id, m.ts, m.value FROM metric_samples m "
               "JOIN metric_series s ON s.metric = m.metric AND s.host_id = m.host_id AND s.env_id = m.env_id "
               "AND s.gpu_uuid = m.gpu_uuid")
    op.drop_table("metric_samples")


def downgrade() -> None:
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
    op.execute("INSERT INTO metric_samples (ts, metric, host_id, env_id, workspace_id, gpu_uuid, value) "
               "SELECT p.ts, s.metric, s.host_id, s.env_id, s.workspace_id, s.gpu_uuid, p.value FROM metric_points p "
               "JOIN metric_series s ON s.id = p.series_id")
    for table in ("metric_late_buckets", "metric_points", "metric_series"):
        op.drop_table(table)
