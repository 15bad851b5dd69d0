"""Migration 0005 on existing rows: environments created before disk sizes existed get
50 GiB (the create form's default), so they count against the storage quota."""

from __future__ import annotations

from sqlalchemy import text

from remotegpu.adapters.db.engine import create_engine
from remotegpu.adapters.db.migrate import upgrade_async


async def test_existing_environments_get_a_50_gib_disk(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    await upgrade_async(url, "0004")
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO environments (id, name, workspace_id, owner_id, image, gpu_count, cpu_cores, memory_gib,"
                " created_at, updated_at, status, desired, env, with_gpu, generation, idle_gpu_threshold,"
                " status_message, jupyter_token, shared)"
                " VALUES ('e1', 'old', 'w1', 'u1', 'img', 0, 2, 8, '2026-01-01 00:00:00', '2026-01-01 00:00:00',"
                " 'stopped', 'stopped', '{}', 1, 0, 5, '', '', 0)"
            ))
        await upgrade_async(url)
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT id, disk_gib FROM environments"))).all()
    finally:
        await engine.dispose()
    assert [tuple(r) for r in rows] == [("e1", 50)]
