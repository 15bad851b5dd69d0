"""images: the catalog (platform and workspace images) and the jobs that make images.

Revision ID: 0019
Revises: 0016
Create Date: 2026-11-29

Frozen like 0001-0006: it does not import ``tables.py``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0023"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "catalog_images",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("tag", sa.String(128), nullable=False),
        sa.Column("reference", sa.String(300), nullable=False),
        sa.Column("visibility", sa.String(16), nullable=False),
        sa.Column("workspace_id", sa.String(36), nullable=True),
        sa.Column("created_by", sa.String(36), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("digest", sa.String(100), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("layers", sa.Integer(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("metadata", sa.Text(), nullable=False),
        sa.Column("preload", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], name="fk_catalog_images_workspace_id_workspaces",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_catalog_images"),
        sa.UniqueConstraint("reference", name="uq_catalog_images_reference"),
    )
    op.create_index("ix_catalog_images_workspace_id", "catalog_images", ["workspace_id"])
    op.create_table(
        "image_jobs",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("image_id", sa.String(36), nullable=False),
        sa.Column("workspace_id", sa.String(36), nullable=True),
        sa.Column("created_by", sa.String(36), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("target", sa.String(300), nullable=False),
        sa.Column("host_id", sa.String(36), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("env_id", sa.String(36), nullable=True),
        sa.Column("dockerfile", sa.Text(), nullable=False),
        sa.Column("context", sa.Text(), nullable=False),
        sa.Column("base_reference", sa.String(300), nullable=False),
        sa.Column("timeout_seconds", sa.Integer(), nullable=False),
        sa.Column("cpu_cores", sa.Integer(), nullable=False),
        sa.Column("memory_gib", sa.Integer(), nullable=False),
        sa.Column("log", sa.Text(), nullable=False),
        sa.Column("log_dropped", sa.BigInteger(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("progress", sa.String(300), nullable=False),
        sa.Column("started_at", _TS, nullable=True),
        sa.Column("finished_at", _TS, nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["image_id"], ["catalog_images.id"], name="fk_image_jobs_image_id_catalog_images",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_image_jobs"),
    )
    op.create_index("ix_image_jobs_host_id_status", "image_jobs", ["host_id", "status"])
    op.create_index("ix_image_jobs_image_id", "image_jobs", ["image_id"])
    op.create_table(
        "host_images",
        sa.Column("host_id", sa.String(36), nullable=False),
        sa.Column("reference", sa.String(300), nullable=False),
        sa.ForeignKeyConstraint(["host_id"], ["hosts.id"], name="fk_host_images_host_id_hosts", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("host_id", "reference", name="pk_host_images"),
    )
    op.create_index("ix_host_images_reference", "host_images", ["reference"])


def downgrade() -> None:
    op.drop_table("host_images")
    op.drop_table("image_jobs")
    op.drop_table("catalog_images")
