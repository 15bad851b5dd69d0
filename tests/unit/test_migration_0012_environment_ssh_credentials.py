"""Migration 0012 on existing rows: the host key the agent once read from inside the
container is dropped (never trustworthy); the per-environment credentials are empty
until the server makes them (the first heartbeat that wants the environment running)."""

from __future__ import annotations

from tests.support.migrations import rows_after_upgrade

READ_FROM_CONTAINER = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHd6R0ZLmBKo1Jz0oMZ2zjWlBBbvQt3dbXq1lLJ5y8qv"


async def test_existing_environments_lose_the_container_reported_key_and_have_no_credentials_yet(tmp_path):
    rows = await rows_after_upgrade(
        tmp_path, "0011",
        "INSERT INTO environments (id, name, workspace_id, owner_id, image, gpu_count, cpu_cores, memory_gib,"
        " disk_gib, ssh_host_key, created_at, updated_at, status, desired, env, with_gpu, generation, idle_gpu_threshold,"
        " status_message, jupyter_token, shared)"
        f" VALUES ('e1', 'old', 'w1', 'u1', 'img', 0, 2, 8, 50, '{READ_FROM_CONTAINER}', '2026-01-01 00:00:00',"
        " '2026-01-01 00:00:00', 'running', 'running', '{}', 1, 0, 5, '', '', 0)",
        "SELECT id, ssh_host_key, ssh_host_key_sealed, ssh_client_key, ssh_client_key_sealed FROM environments",
    )
    assert rows == [("e1", "", "", "", "")]
