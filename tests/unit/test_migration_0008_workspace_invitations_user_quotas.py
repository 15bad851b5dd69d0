"""Migration 0008 on existing rows: workspaces made before it keep their members and
quota rows, gain the invitation and per-user cap tables, and the downgrade removes them."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect, text

from remotegpu.adapters.db.engine import create_engine
from remotegpu.adapters.db.migrate import alembic_config, upgrade_async

OLD_ROWS = [
    "INSERT INTO users (id, username, email, password_hash, created_at, display_name, is_active, is_admin)"
    " VALUES ('u1', 'ann', 'ann@example.com', 'x', '2026-01-01 00:00:00', '', 1, 0)",
    "INSERT INTO workspaces (id, name, slug, is_personal, created_by, created_at)"
    " VALUES ('w1', 'Lab', 'lab', 0, 'u1', '2026-01-01 00:00:00')",
    "INSERT INTO workspace_members (workspace_id, user_id, role, created_at) VALUES ('w1', 'u1', 'owner', '2026-01-01 00:00:00')",
    "INSERT INTO workspace_quotas (workspace_id, max_gpus) VALUES ('w1', 3)",
]


async def test_existing_workspaces_keep_their_rows_and_the_downgrade_drops_the_new_tables(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    await upgrade_async(url, "0007")
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            for statement in OLD_ROWS:
                await conn.execute(text(statement))
        await upgrade_async(url)
        async with engine.begin() as conn:
            assert (await conn.execute(text("SELECT workspace_id, max_gpus FROM workspace_quotas"))).all() == [("w1", 3)]
            assert (await conn.execute(text("SELECT role FROM workspace_members"))).all() == [("owner",)]
            await conn.execute(text("INSERT INTO user_quotas (user_id, max_gpus, max_workspaces) VALUES ('u1', 2, 1)"))
            await conn.execute(text(
                "INSERT INTO workspace_invitations (id, workspace_id, user_id, role, invited_by, status, created_at, expires_at)"
                " VALUES ('i1', 'w1', 'u1', 'member', 'u2', 'pending', '2026-01-01 00:00:00', '2026-01-08 00:00:00')"
            ))

        def downgrade(sync_conn):
            config = alembic_config(url)
            config.attributes["connection"] = sync_conn
            command.downgrade(config, "0007")
            return set(inspect(sync_conn).get_table_names())

        async with engine.begin() as conn:
            tables = await conn.run_sync(downgrade)
        assert "workspace_invitations" not in tables and "user_quotas" not in tables
        assert {"workspaces", "workspace_members", "workspace_quotas"} <= tables
    finally:
        await engine.dispose()
