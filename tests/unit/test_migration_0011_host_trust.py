"""Migration 0011 on existing rows: hosts that already report a loopback address (the
embedded host, agents on the server's machine) keep working — they get the loopback
allowance; every other host gets none. No host has GPU conflicts yet."""

from __future__ import annotations

from tests.support.migrations import rows_after_upgrade


async def test_hosts_reporting_loopback_keep_the_allowance_others_get_none(tmp_path):
    hosts = [("embedded", "127.0.0.1", "127.0.0.1"), ("same-box", "", "127.0.0.1"), ("v6", "::1", ""),
             ("remote", "203.0.113.5", "10.0.0.5"), ("new", "", "")]
    values = ", ".join(
        f"('h{n}', '{name}', 'ready', '{{}}', 0, 0, 0, '{address}', '{private}', '', 0, 0, '{{}}', 20000, 29999)"
        for n, (name, address, private) in enumerate(hosts)
    )
    rows = await rows_after_upgrade(
        tmp_path, "0010",
        "INSERT INTO hosts (id, name, status, labels, cpu_cores, memory_gib, disk_gib, address, private_address, runtime,"
        f" runtime_healthy, fake_gpus, gpu_utilization, port_range_start, port_range_end) VALUES {values}",
        "SELECT name, allow_loopback, gpu_conflicts FROM hosts ORDER BY id",
    )
    assert [(name, bool(allow), conflicts) for name, allow, conflicts in rows] == [
        ("embedded", True, "{}"), ("same-box", True, "{}"), ("v6", True, "{}"), ("remote", False, "{}"), ("new", False, "{}"),
    ]
