"""Migration 0034: training jobs get ``output`` (existing jobs: none), and metered subjects
hold a job node's id (longer than a UUID); the downgrade drops the column and the nodes'
metering (it would not fit), keeping environments'."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect, text

from remotegpu.adapters.db.engine import create_engine
from remotegpu.adapters.db.migrate import alembic_config, upgrade_async

_NOW = "2026-01-01 00:00:00"
_ENV = "e" * 36
_NODE = "j" * 36 + ".a0.n1"


async def _reading(conn, rid: str, subject: str) -> None:
    await conn.execute(text(
        "INSERT INTO meter_readings (id, environment_id, workspace_id, owner_id, at, n, status, gpu_model, gpu_count, with_gpu,"
        " cpu_cores, memory_gib, disk_gib) VALUES (:id, :s, 'w1', 'u1', :t, 0, 'running', '', 1, true, 1, 1, 0)"),
        {"id": rid, "s": subject, "t": _NOW})


async def test_jobs_get_an_output_column_node_subjects_fit_and_the_downgrade_undoes_it(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    await upgrade_async(url, "0024")
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("PRAGMA foreign_keys=OFF"))
            await _reading(conn, "r1", _ENV)
        await upgrade_async(url)
        async with engine.begin() as conn:
            await _reading(conn, "r2", _NODE)
            columns = await conn.run_sync(lambda c: {col["name"]: col for col in inspect(c).get_columns("meter_readings")})
            jobs = await conn.run_sync(lambda c: {col["name"] for col in inspect(c).get_columns("training_jobs")})
        assert "output" in jobs and columns["environment_id"]["type"].length == 64

        def downgrade(connection) -> None:
            config = alembic_config(url)
            config.attributes["connection"] = connection
            command.downgrade(config, "0024")

        async with engine.begin() as conn:
            await conn.run_sync(downgrade)
        async with engine.connect() as conn:
            subjects = [r[0] for r in await conn.execute(text("SELECT environment_id FROM meter_readings"))]
            jobs = await conn.run_sync(lambda c: {col["name"] for col in inspect(c).get_columns("training_jobs")})
    finally:
        await engine.dispose()
    assert subjects == [_ENV] and "output" not in jobs
