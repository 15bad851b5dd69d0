"""change_epoch: one counter that every committed change to what the hot reads show moves.

Revision ID: 0023
Revises: 0016
Create Date: 2026-11-29

The environment list, detail and timeline the GPU-type capacity and
workspace quotas with their usage are cached per
epoch (application/shared/read_cache.py): a request reads the committed epoch, and an
answer built at that epoch is still the truth. Triggers bump it in the same transaction
as the change, so the new value becomes visible exactly with the change itself.

PostgreSQL: deferred constraint triggers (they run at commit, so the counter's row lock
is the last lock a transaction takes: no deadlock with row locks taken earlier), and an
UPDATE bumps only when something other than the per-heartbeat columns changed (the
agents re-save every host and environment every few seconds, mostly unchanged).
SQLite (embedded, one host): every write bumps; there is one writer at a time anyway.

Frozen like 0001-0006: it does not import ``tables.py``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0020"
branch_labels = None
depends_on = None

#: Tables whose rows the cached reads show or schedule with.
TABLES = (
    "environments", "environment_events", "gpu_allocations", "host_ports", "hosts", "host_gpus", "workspace_members",
    "workspace_quotas",
)
#: Columns an UPDATE may change without moving the epoch (PostgreSQL): nothing cached shows
#: or schedules with them, and heartbeats and the idle sweep rewrite them all the time.
#: ``hosts.last_heartbeat_at`` counts only when it goes from or to NULL (a host that
#: never reported counts as able to hold anything).
VOLATILE = {
    "environments": ("updated_at", "last_activity_at", "idle_since"),
    "hosts": ("last_heartbeat_at", "gpu_utilization"),
}


def _pg_when(table: str) -> str:
    minus = "".join(f" - '{column}'" for column in VOLATILE.get(table, ()))
    when = f"(to_jsonb(OLD){minus}) IS DISTINCT FROM (to_jsonb(NEW){minus})"
    if table == "hosts":
        when += " OR ((OLD.last_heartbeat_at IS NULL) <> (NEW.last_heartbeat_at IS NULL))"
    return when


def upgrade() -> None:
    op.create_table(
        "change_epoch",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_change_epoch"),
    )
    op.execute("INSERT INTO change_epoch (id, epoch) VALUES (1, 0)")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION remotegpu_bump_change_epoch() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN UPDATE change_epoch SET epoch = epoch + 1 WHERE id = 1; RETURN NULL; END $$"
        )
        for table in TABLES:
            op.execute(
                f"CREATE CONSTRAINT TRIGGER change_epoch_{table}_write AFTER INSERT OR DELETE ON {table} "
                "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION remotegpu_bump_change_epoch()"
            )
            op.execute(
                f"CREATE CONSTRAINT TRIGGER change_epoch_{table}_update AFTER UPDATE ON {table} "
                f"DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN ({_pg_when(table)}) "
                "EXECUTE FUNCTION remotegpu_bump_change_epoch()"
            )
    else:
        for table in TABLES:
            for event in ("INSERT", "UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER change_epoch_{table}_{event.lower()} AFTER {event} ON {table} "
                    "BEGIN UPDATE change_epoch SET epoch = epoch + 1 WHERE id = 1; END"
                )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS change_epoch_{table}_write ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS change_epoch_{table}_update ON {table}")
        op.execute("DROP FUNCTION IF EXISTS remotegpu_bump_change_epoch()")
    else:
        for table in TABLES:
            for event in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS change_epoch_{table}_{event}")
    op.drop_table("change_epoch")
