"""Environments: when the auto-stop sweep must next look at them (``autostop_due_at``), indexed.

Revision ID: 0038
Revises: 0024
Create Date: 2026-11-30

The sweep ran every 2 s over every running environment (with 2,000 of them, tens of ms
of a server's event loop each time, and a scheduling lock). Now it reads only rows whose
``autostop_due_at`` has come: running ones past their time limit, and running ones with
an idle policy (watched every sweep). The repository writes the column with every
environment it saves (``Environment.autostop_due_at``); this fills it for the rows that
exist. Frozen: it does not import the domain or ``tables.py``.
"""

from __future__ import annotations

from datetime import timedelta, timezone

import sqlalchemy as sa
from alembic import op

revision = "0038"
down_revision = "0034"  # chained at merge (written against 0024)
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("environments", sa.Column("autostop_due_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_environments_autostop_due_at", "environments", ["autostop_due_at"])
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    stamp = sa.DateTime(timezone=True)
    rows = bind.execute(sa.text(
        "SELECT id, started_at, created_at, stop_after_minutes, idle_stop_minutes FROM environments"
        " WHERE status = 'running' AND (stop_after_minutes IS NOT NULL OR idle_stop_minutes IS NOT NULL)"
    ).columns(sa.column("id"), sa.column("started_at", stamp), sa.column("created_at", stamp),
              sa.column("stop_after_minutes"), sa.column("idle_stop_minutes"))).all()
    update = sa.text("UPDATE environments SET autostop_due_at = :due WHERE id = :id").bindparams(sa.bindparam("due", type_=stamp))
    for env_id, started, created, stop_after, idle_stop in rows:
        started = started or created
        due = started if idle_stop else started + timedelta(minutes=stop_after)
        if sqlite:  # naive UTC, as tables.UTCDateTime stores it
            due = due.astimezone(timezone.utc).replace(tzinfo=None) if due.tzinfo else due
        elif due.tzinfo is None:
            due = due.replace(tzinfo=timezone.utc)
        bind.execute(update, {"due": due, "id": env_id})


def downgrade() -> None:
    op.drop_index("ix_environments_autostop_due_at", "environments")
    with op.batch_alter_table("environments") as batch:  # SQLite: DROP COLUMN through a table copy
        batch.drop_column("autostop_due_at")
