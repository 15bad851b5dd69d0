"""Fleet and environments: hosts and their GPUs, environments and their event log,
GPU and host-port allocations.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04

Frozen copy of the schema, like 0001: it does not import ``tables.py``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _id(name: str = "id", nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.String(36), nullable=nullable)


def _int(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.Integer(), nullable=nullable)


def _bool(name: str) -> sa.Column:
    return sa.Column(name, sa.Boolean(), nullable=False)


def _env_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["environment_id"], ["environments.id"], name=f"fk_{table}_environment_id_environments", ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "hosts",
        _id(),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        _int("cpu_cores"),
        _int("memory_gib"),
        _int("disk_gib"),
        sa.Column("address", sa.String(255), nullable=False),
        _ts("last_heartbeat_at", nullable=True),
        _ts("created_at", nullable=True),
        sa.Column("join_token_hash", sa.String(128), nullable=True),
        sa.Column("agent_token_hash", sa.String(128), nullable=True),
        sa.Column("runtime", sa.String(32), nullable=False),
        _bool("runtime_healthy"),
        _bool("fake_gpus"),
        sa.Column("gpu_utilization", sa.JSON(), nullable=False),
        _int("port_range_start"),
        _int("port_range_end"),
        sa.PrimaryKeyConstraint("id", name="pk_hosts"),
        sa.UniqueConstraint("name", name="uq_hosts_name"),
        sa.UniqueConstraint("join_token_hash", name="uq_hosts_join_token_hash"),
        sa.UniqueConstraint("agent_token_hash", name="uq_hosts_agent_token_hash"),
    )

    op.create_table(
        "host_gpus",
        _id("host_id"),
        _int("index"),
        sa.Column("uuid", sa.String(128), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        _int("memory_mib"),
        _int("numa_node", nullable=True),
        _int("nvlink_group", nullable=True),
        _bool("healthy"),
        sa.ForeignKeyConstraint(["host_id"], ["hosts.id"], name="fk_host_gpus_host_id_hosts", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("host_id", "index", name="pk_host_gpus"),
        sa.UniqueConstraint("uuid", name="uq_host_gpus_uuid"),
    )

    op.create_table(
        "environments",
        _id(),
        sa.Column("name", sa.String(64), nullable=False),
        _id("workspace_id"),
        _id("owner_id"),
        sa.Column("image", sa.String(500), nullable=False),
        _int("gpu_count"),
        sa.Column("gpu_model", sa.String(200), nullable=True),
        _int("cpu_cores"),
        _int("memory_gib"),
        _ts("created_at"),
        _ts("updated_at"),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("desired", sa.String(16), nullable=False),
        sa.Column("env", sa.JSON(), nullable=False),
        _id("host_id", nullable=True),
        _bool("with_gpu"),
        _int("generation"),
        _ts("queued_at", nullable=True),
        _ts("started_at", nullable=True),
        _int("stop_after_minutes", nullable=True),
        _int("idle_stop_minutes", nullable=True),
        _int("idle_gpu_threshold"),
        _ts("idle_since", nullable=True),
        _ts("last_activity_at", nullable=True),
        sa.Column("status_message", sa.Text(), nullable=False),
        sa.Column("jupyter_token", sa.String(255), nullable=False),
        _bool("shared"),
        sa.PrimaryKeyConstraint("id", name="pk_environments"),
    )
    op.create_index("ix_environments_workspace_id", "environments", ["workspace_id"])
    op.create_index("ix_environments_host_id", "environments", ["host_id"])
    op.create_index("ix_environments_status", "environments", ["status"])

    op.create_table(
        "environment_events",
        _id(),
        _id("environment_id"),
        _int("seq"),
        _ts("at"),
        sa.Column("from_status", sa.String(16), nullable=True),
        sa.Column("to_status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        _env_fk("environment_events"),
        sa.PrimaryKeyConstraint("id", name="pk_environment_events"),
    )
    op.create_index("ix_environment_events_environment_id_at", "environment_events", ["environment_id", "at"])

    op.create_table(
        "gpu_allocations",
        _id("environment_id"),
        sa.Column("gpu_uuid", sa.String(128), nullable=False),
        _id("host_id"),
        _env_fk("gpu_allocations"),
        sa.PrimaryKeyConstraint("environment_id", "gpu_uuid", name="pk_gpu_allocations"),
        sa.UniqueConstraint("gpu_uuid", name="uq_gpu_allocations_gpu_uuid"),
    )

    op.create_table(
        "host_ports",
        _id("environment_id"),
        _id("host_id"),
        _int("port"),
        sa.Column("purpose", sa.String(16), nullable=False),
        _env_fk("host_ports"),
        sa.PrimaryKeyConstraint("environment_id", "host_id", "port", name="pk_host_ports"),
        sa.UniqueConstraint("host_id", "port", name="uq_host_ports_host_id_port"),
    )


def downgrade() -> None:
    # Children before parents; dropping a table drops its indexes.
    for table in ("host_ports", "gpu_allocations", "environment_events", "environments", "host_gpus", "hosts"):
        op.drop_table(table)
