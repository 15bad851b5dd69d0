"""Migration 0038: running environments with an auto-stop policy get their due time
(time limit: start + limit; idle policy: their start, watched every sweep), the others
none; the downgrade drops the column and its index."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect, text

from remotegpu.adapters.db.engine import create_engine
from remotegpu.adapters.db.migrate import alembic_config, upgrade_async

_COLUMNS = ("id, name, workspace_id, owner_id, image, gpu_count, cpu_cores, memory_gib, created_at, updated_at, status,"
            " desired, env, with_gpu, generation, started_at, stop_after_minutes, idle_stop_minutes, idle_gpu_threshold,"
            " status_message, jupyter_token, shared")


async def test_running_environments_with_a_policy_get_their_due_time_and_the_downgrade_undoes_it(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    await upgrade_async(url, "0024")
    engine = create_engine(url)
    rows = [  # id, status, started_at, stop_after, idle_stop
        ("limit", "running", "2026-01-01 10:00:00.000000", 30, None),
        ("idle", "running", "2026-01-01 11:00:00.000000", None, 15),
        ("none", "running", "2026-01-01 10:00:00.000000", None, None),
        ("stopped", "stopped", "2026-01-01 10:00:00.000000", 30, 15),
    ]
    try:
        async with engine.begin() as conn:
            await conn.execute(text("PRAGMA foreign_keys=OFF"))  # no workspace/user rows: only environments matter
            for env_id, status, started, stop_after, idle_stop in rows:
                await conn.execute(text(
                    f"INSERT INTO environments ({_COLUMNS}) VALUES (:id, :id, 'w1', 'u1', 'img', 1, 1, 1, :t, :t, :status,"
                    " 'running', '{}', 1, 0, :started, :stop_after, :idle_stop, 5, '', '', 0)"),
                    {"id": env_id, "t": "2026-01-01 09:00:00.000000", "status": status, "started": started,
                     "stop_after": stop_after, "idle_stop": idle_stop})
        await upgrade_async(url)
        async with engine.connect() as conn:
            due = dict((await conn.execute(text("SELECT id, autostop_due_at FROM environments"))).all())
            indexes = await conn.run_sync(lambda c: {i["name"] for i in inspect(c).get_indexes("environments")})
        assert due == {"limit": "2026-01-01 10:30:00.000000", "idle": "2026-01-01 11:00:00.000000", "none": None, "stopped": None}
        assert "ix_environments_autostop_due_at" in indexes

        def downgrade(connection) -> None:
            config = alembic_config(url)
            config.attributes["connection"] = connection
            command.downgrade(config, "0024")

        async with engine.begin() as conn:
            await conn.run_sync(downgrade)
        async with engine.connect() as conn:
            columns = await conn.run_sync(lambda c: {col["name"] for col in inspect(c).get_columns("environments")})
            count = (await conn.execute(text("SELECT count(*) FROM environments"))).scalar_one()
    finally:
        await engine.dispose()
    assert "autostop_due_at" not in columns and count == 4
