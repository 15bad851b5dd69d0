"""Migration 0005 on existing rows: environments created before disk sizes existed get
50 GiB (the create form's default), so they count against the storage quota."""

from __future__ import annotations

from tests.support.migrations import rows_after_upgrade


async def test_existing_environments_get_a_50_gib_disk(tmp_path):
    rows = await rows_after_upgrade(
        tmp_path, "0004",
        "INSERT INTO environments (id, name, workspace_id, owner_id, image, gpu_count, cpu_cores, memory_gib,"
        " created_at, updated_at, status, desired, env, with_gpu, generation, idle_gpu_threshold,"
        " status_message, jupyter_token, shared)"
        " VALUES ('e1', 'old', 'w1', 'u1', 'img', 0, 2, 8, '2026-01-01 00:00:00', '2026-01-01 00:00:00',"
        " 'stopped', 'stopped', '{}', 1, 0, 5, '', '', 0)",
        "SELECT id, disk_gib FROM environments",
    )
    assert rows == [("e1", 50)]
