"""Migration 0004 on existing rows: cordoned / draining hosts keep that as the admin's
choice, every other host (ready, offline) gets ``ready``."""

from __future__ import annotations

from sqlalchemy import text

from remotegpu.adapters.db.engine import create_engine
from remotegpu.adapters.db.migrate import upgrade_async


async def test_existing_hosts_keep_a_cordon_or_drain_as_their_admin_status(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    await upgrade_async(url, "0003")
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            for n, status in enumerate(["ready", "cordoned", "draining", "offline"]):
                await conn.execute(text(
                    "INSERT INTO hosts (id, name, status, labels, cpu_cores, memory_gib, disk_gib, address, runtime,"
                    " runtime_healthy, fake_gpus, gpu_utilization, port_range_start, port_range_end)"
                    " VALUES (:id, :name, :status, '{}', 0, 0, 0, '', '', 0, 0, '{}', 20000, 29999)"
                ), {"id": f"h{n}", "name": status, "status": status})
        await upgrade_async(url)
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT name, status, admin_status FROM hosts ORDER BY id"))).all()
    finally:
        await engine.dispose()
    assert [tuple(r) for r in rows] == [
        ("ready", "ready", "ready"), ("cordoned", "cordoned", "cordoned"),
        ("draining", "draining", "draining"), ("offline", "offline", "ready"),
    ]
