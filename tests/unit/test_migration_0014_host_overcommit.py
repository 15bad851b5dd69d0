"""Migration 0014 on existing rows: every host gets overcommit 1.0 (schedules as before),
and the downgrade drops the columns again."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect

from remotegpu.adapters.db.engine import create_engine
from remotegpu.adapters.db.migrate import alembic_config, upgrade_async
from tests.support.migrations import rows_after_upgrade


async def test_existing_hosts_get_no_overcommit(tmp_path):
    rows = await rows_after_upgrade(
        tmp_path, "0013",
        "INSERT INTO hosts (id, name, status, labels, cpu_cores, memory_gib, disk_gib, address, private_address, runtime,"
        " runtime_healthy, fake_gpus, gpu_utilization, port_range_start, port_range_end)"
        " VALUES ('h1', 'gpu-1', 'ready', '{}', 2, 8, 100, '', '', '', 0, 0, '{}', 20000, 29999)",
        "SELECT name, cpu_overcommit, memory_overcommit FROM hosts",
    )
    assert rows == [("gpu-1", 1.0, 1.0)]


async def test_downgrade_drops_the_columns(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    await upgrade_async(url)
    engine = create_engine(url)

    def downgrade(connection) -> None:
        config = alembic_config(url)
        config.attributes["connection"] = connection
        command.downgrade(config, "0013")

    try:
        async with engine.begin() as conn:
            await conn.run_sync(downgrade)
        async with engine.connect() as conn:
            columns = await conn.run_sync(lambda c: {col["name"] for col in inspect(c).get_columns("hosts")})
    finally:
        await engine.dispose()
    assert "cpu_overcommit" not in columns and "memory_overcommit" not in columns and "cpu_cores" in columns
