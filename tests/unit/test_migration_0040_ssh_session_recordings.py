"""Migration 0040: SSH gateway sessions get the object key of their recording (NULL for
the sessions before it); the downgrade drops the column and keeps the rows."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect, text

from remotegpu.adapters.db.engine import create_engine
from remotegpu.adapters.db.migrate import alembic_config, upgrade_async


async def test_sessions_get_a_recording_column_and_the_downgrade_drops_it(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    await upgrade_async(url, "0039")
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO ssh_sessions (id, user_id, username, environment_id, workspace_id, environment_name, kind,"
                " client_address, key_fingerprint, started_at, end_reason, channels) VALUES ('s1', 'u1', 'alice', 'e1',"
                " 'w1', 'env', 'session', '127.0.0.1', 'SHA256:x', '2026-01-01 10:00:00.000000', '', '[\"shell\"]')"))
        await upgrade_async(url)
        async with engine.begin() as conn:
            assert (await conn.execute(text("SELECT recording FROM ssh_sessions"))).scalar_one() is None
            await conn.execute(text("UPDATE ssh_sessions SET recording = 'ssh-recordings/w1/s1.cast'"))

        def downgrade(connection) -> None:
            config = alembic_config(url)
            config.attributes["connection"] = connection
            command.downgrade(config, "0039")

        async with engine.begin() as conn:
            await conn.run_sync(downgrade)
        async with engine.connect() as conn:
            columns = await conn.run_sync(lambda c: {col["name"] for col in inspect(c).get_columns("ssh_sessions")})
            count = (await conn.execute(text("SELECT count(*) FROM ssh_sessions"))).scalar_one()
    finally:
        await engine.dispose()
    assert "recording" not in columns and count == 1
