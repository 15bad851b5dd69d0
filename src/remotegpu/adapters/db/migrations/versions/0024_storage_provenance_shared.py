"""storage (issue 14, second part): where a version came from, where a blob's bytes are,
and the workspace shared disk.

- ``storage_versions.source_kind`` / ``source_id``: the environment or training job that
  made a version (null: uploaded by a person); the same on
  ``storage_uploads`` until the version is committed.
- ``storage_blobs.object_key``: the object holding the blob's bytes (null: the classic
  ``blobs/sha256/<ab>/<sha256>``). Uploads now assemble a blob at its own key and keep it
  there, instead of copying it once verified.
- ``workspace_shared_disks``: a workspace's shared disk (size), mounted at /root/shared.

Revision ID: 0024
Revises: 0026
Create Date: 2026-11-29

Frozen: it does not import ``tables.py``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0026"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("storage_versions") as batch:
        batch.add_column(sa.Column("source_kind", sa.String(16), nullable=True))
        batch.add_column(sa.Column("source_id", sa.String(36), nullable=True))
    with op.batch_alter_table("storage_uploads") as batch:
        batch.add_column(sa.Column("source_kind", sa.String(16), nullable=True))
        batch.add_column(sa.Column("source_id", sa.String(36), nullable=True))
    with op.batch_alter_table("storage_blobs") as batch:
        batch.add_column(sa.Column("object_key", sa.String(600), nullable=True))
    op.create_table(
        "workspace_shared_disks",
        sa.Column("workspace_id", sa.String(36), nullable=False),
        sa.Column("size_gib", sa.Integer, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("workspace_id"),
    )


def downgrade() -> None:
    op.drop_table("workspace_shared_disks")
    with op.batch_alter_table("storage_blobs") as batch:
        batch.drop_column("object_key")
    with op.batch_alter_table("storage_uploads") as batch:
        batch.drop_column("source_id")
        batch.drop_column("source_kind")
    with op.batch_alter_table("storage_versions") as batch:
        batch.drop_column("source_id")
        batch.drop_column("source_kind")
