"""Hosts: the Kubernetes cluster's nodes as a Kubernetes host's agent reports them
(``cluster_nodes``: name, ready, schedulable, GPU capacity / allocatable / allocated by
the platform, CPU and memory allocatable, GPU labels), for the admin's fleet view.

Revision ID: 0037
Revises: 0024
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0037"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("hosts", sa.Column("cluster_nodes", sa.JSON, nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("hosts") as batch:  # SQLite: DROP COLUMN through a table copy
        batch.drop_column("cluster_nodes")
