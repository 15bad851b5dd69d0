"""workloads: a training job's output (the directory that becomes a model or dataset
version when the job succeeds, and how that went); billing per job node: a metered
subject may be a node (``<job id>.a<attempt>.n<rank>``), so the subject columns of
``meter_readings``, ``meters`` and ``usage_segments`` hold 64 characters.

Revision ID: 0034
Revises: 0024
Create Date: 2026-11-30

Frozen: it does not import ``tables.py``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0034"
down_revision = "0037"  # chained at merge (written against 0024)
branch_labels = None
depends_on = None


_METERED = ("meter_readings", "meters", "usage_segments")


def upgrade() -> None:
    with op.batch_alter_table("training_jobs") as batch:
        batch.add_column(sa.Column("output", sa.JSON(), nullable=True))
    for table in _METERED:
        with op.batch_alter_table(table) as batch:
            batch.alter_column("environment_id", existing_type=sa.String(36), type_=sa.String(64),
                               existing_nullable=False)


def downgrade() -> None:
    # Job nodes' metering (longer subject ids) cannot be kept in 36 characters: dropped.
    op.execute("DELETE FROM meter_readings WHERE length(environment_id) > 36")
    op.execute("DELETE FROM meters WHERE length(environment_id) > 36")
    op.execute("DELETE FROM usage_segments WHERE length(environment_id) > 36")
    for table in _METERED:
        with op.batch_alter_table(table) as batch:
            batch.alter_column("environment_id", existing_type=sa.String(64), type_=sa.String(36),
                               existing_nullable=False)
    with op.batch_alter_table("training_jobs") as batch:
        batch.drop_column("output")
