"""Prices and workspaces written move the change epoch: gpu-types and the workspace list are cached per epoch.

Revision ID: 0030
Revises: 0027
Create Date: 2026-11-29

gpu-types shows each model's hourly price on every request; the prices are kept with
the epoch (BillingService.hourly_prices) until the epoch moves or the next price takes
effect; the caller's workspaces (a hot read: the console asks on every page) are
cached per epoch too, and 0023 covers their memberships, not the workspaces' own rows
(a rename). With these triggers a price or workspace written by any process moves the
epoch in its own transaction, as 0023's do for the tables the other hot reads show.

Frozen like 0023: it does not import ``tables.py``.
"""

from __future__ import annotations

from alembic import op

revision = "0030"
down_revision = "0027"
branch_labels = None
depends_on = None

TABLES = ("billing_prices", "workspaces")


def upgrade() -> None:
    for table in TABLES:
        if op.get_bind().dialect.name == "postgresql":
            # 0023's function; deferred, so the counter's row lock is taken last (at commit).
            op.execute(
                f"CREATE CONSTRAINT TRIGGER change_epoch_{table}_write AFTER INSERT OR UPDATE OR DELETE ON {table} "
                "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION remotegpu_bump_change_epoch()"
            )
        else:
            for event in ("INSERT", "UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER change_epoch_{table}_{event.lower()} AFTER {event} ON {table} "
                    "BEGIN UPDATE change_epoch SET epoch = epoch + 1 WHERE id = 1; END"
                )


def downgrade() -> None:
    for table in TABLES:
        if op.get_bind().dialect.name == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS change_epoch_{table}_write ON {table}")
        else:
            for event in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS change_epoch_{table}_{event}")
