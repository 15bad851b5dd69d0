"""Migration 0006 on existing rows: environments created before host keys were read
get "" (not known yet), which the next heartbeat of their host fills in."""

from __future__ import annotations

from tests.support.migrations import rows_after_upgrade


async def test_existing_environments_have_no_host_key_yet(tmp_path):
    rows = await rows_after_upgrade(
        tmp_path, "0005",
        "INSERT INTO environments (id, name, workspace_id, owner_id, image, gpu_count, cpu_cores, memory_gib,"
        " disk_gib, created_at, updated_at, status, desired, env, with_gpu, generation, idle_gpu_threshold,"
        " status_message, jupyter_token, shared)"
        " VALUES ('e1', 'old', 'w1', 'u1', 'img', 0, 2, 8, 50, '2026-01-01 00:00:00', '2026-01-01 00:00:00',"
        " 'running', 'running', '{}', 1, 0, 5, '', '', 0)",
        "SELECT id, ssh_host_key FROM environments",
    )
    assert rows == [("e1", "")]
