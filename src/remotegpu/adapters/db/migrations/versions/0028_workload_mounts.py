"""workloads: dataset/model mounts of training jobs (inference services keep theirs in
their JSON document).

Revision ID: 0028
Revises: 0031
Create Date: 2026-11-29

Frozen: it does not import ``tables.py``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0028"
down_revision = "0031"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("training_jobs") as batch:
        batch.add_column(sa.Column("data_mounts", sa.JSON(), nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("training_jobs") as batch:
        batch.drop_column("data_mounts")
