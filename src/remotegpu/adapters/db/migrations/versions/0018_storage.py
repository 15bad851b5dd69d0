"""storage: datasets and models, immutable versions, content-addressed blobs, uploads.

Revision ID: 0018
Revises: 0016
Create Date: 2026-11-29

Frozen like 0001-0006: it does not import ``tables.py``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0016"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "storage_repositories",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("workspace_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("description", sa.String(2000), nullable=False),
        sa.Column("visibility", sa.String(16), nullable=False),
        sa.Column("tags", sa.Text(), nullable=False),
        sa.Column("model", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(36), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], name="fk_storage_repositories_workspace_id_workspaces",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_storage_repositories"),
        sa.UniqueConstraint("workspace_id", "kind", "name", name="uq_storage_repositories_workspace_id_kind_name"),
    )
    op.create_index("ix_storage_repositories_visibility", "storage_repositories", ["visibility"])
    op.create_table(
        "storage_versions",
        sa.Column("repository_id", sa.String(36), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("message", sa.String(2000), nullable=False),
        sa.Column("created_by", sa.String(36), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(["repository_id"], ["storage_repositories.id"],
                                name="fk_storage_versions_repository_id_storage_repositories", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("repository_id", "number", name="pk_storage_versions"),
    )
    op.create_table(
        "storage_version_files",
        sa.Column("repository_id", sa.String(36), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(["repository_id", "number"], ["storage_versions.repository_id", "storage_versions.number"],
                                name="fk_storage_version_files_repository_id_storage_versions", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("repository_id", "number", "path", name="pk_storage_version_files"),
    )
    op.create_index("ix_storage_version_files_sha256", "storage_version_files", ["sha256"])
    op.create_table(
        "storage_blobs",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("sha256", name="pk_storage_blobs"),
    )
    op.create_table(
        "storage_uploads",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("repository_id", sa.String(36), nullable=False),
        sa.Column("workspace_id", sa.String(36), nullable=False),
        sa.Column("created_by", sa.String(36), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("part_size", sa.BigInteger(), nullable=False),
        sa.Column("message", sa.String(2000), nullable=False),
        sa.Column("tag", sa.String(64), nullable=True),
        sa.Column("files", sa.Text(), nullable=False),
        sa.Column("pending", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["repository_id"], ["storage_repositories.id"],
                                name="fk_storage_uploads_repository_id_storage_repositories", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_storage_uploads"),
    )
    op.create_index("ix_storage_uploads_updated_at", "storage_uploads", ["updated_at"])
    op.create_table(
        "storage_upload_parts",
        sa.Column("upload_id", sa.String(36), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("etag", sa.String(200), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["upload_id"], ["storage_uploads.id"], name="fk_storage_upload_parts_upload_id_storage_uploads",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("upload_id", "sha256", "number", name="pk_storage_upload_parts"),
    )
    op.create_table(
        "storage_upload_blobs",
        sa.Column("upload_id", sa.String(36), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(["upload_id"], ["storage_uploads.id"], name="fk_storage_upload_blobs_upload_id_storage_uploads",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("upload_id", "sha256", name="pk_storage_upload_blobs"),
    )
    op.create_index("ix_storage_upload_blobs_sha256", "storage_upload_blobs", ["sha256"])
    op.add_column("environments", sa.Column("data_mounts", sa.JSON(), nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("environments") as batch:  # SQLite: DROP COLUMN through a table copy
        batch.drop_column("data_mounts")
    for table in ("storage_upload_blobs", "storage_upload_parts", "storage_uploads", "storage_blobs", "storage_version_files", "storage_versions",
                  "storage_repositories"):
        op.drop_table(table)
