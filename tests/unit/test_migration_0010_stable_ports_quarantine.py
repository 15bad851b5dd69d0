"""Migration 0010 on existing rows: environments remember no GPUs yet, hosts hold
nothing in quarantine (both ``[]``)."""

from __future__ import annotations

from tests.support.migrations import rows_after_upgrade


async def test_existing_environments_and_hosts_get_empty_lists(tmp_path):
    rows = await rows_after_upgrade(
        tmp_path, "0009",
        "INSERT INTO environments (id, name, workspace_id, owner_id, image, gpu_count, cpu_cores, memory_gib,"
        " disk_gib, created_at, updated_at, status, desired, env, with_gpu, generation, idle_gpu_threshold,"
        " status_message, jupyter_token, shared)"
        " VALUES ('e1', 'old', 'w1', 'u1', 'img', 0, 2, 8, 50, '2026-01-01 00:00:00', '2026-01-01 00:00:00',"
        " 'stopped', 'stopped', '{}', 1, 0, 5, '', '', 0)",
        "SELECT id, last_gpu_uuids FROM environments",
    )
    assert rows == [("e1", "[]")]
    (tmp_path / "h").mkdir()
    rows = await rows_after_upgrade(
        tmp_path / "h", "0009",
        "INSERT INTO hosts (id, name, status, labels, cpu_cores, memory_gib, disk_gib, address, runtime,"
        " runtime_healthy, fake_gpus, gpu_utilization, port_range_start, port_range_end)"
        " VALUES ('h1', 'old', 'ready', '{}', 0, 0, 0, '', '', 0, 0, '{}', 20000, 29999)",
        "SELECT id, quarantined FROM hosts",
    )
    assert rows == [("h1", "[]")]
