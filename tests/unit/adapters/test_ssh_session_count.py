"""Counting SSH sessions from a container's /proc/<pid>/net/tcp{,6} (a fake /proc here)."""

from __future__ import annotations

from remotegpu.adapters.runtime.docker_runtime import established_connections

HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
TCP = HEADER + (
    "   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n"  # listen :22
    "   1: 030011AC:0016 010011AC:B4F2 01 00000000:00000000 02:000A1D3C 00000000     0        0 2 4\n"  # ssh
    "   2: 030011AC:0016 010011AC:B4F4 06 00000000:00000000 03:00000000 00000000     0        0 0 3\n"  # TIME_WAIT
    "   3: 0100007F:22B8 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 3 1\n"  # :8888
    "   4: 030011AC:9C40 0A0A0A0A:0016 01 00000000:00000000 00:00000000 00000000     0        0 4 1\n"  # outgoing ssh
)
TCP6 = HEADER + (
    "   0: 0000000000000000FFFF0000030011AC:0016 0000000000000000FFFF0000010011AC:B500 01 0:0 0:0 0 0 0 5 1\n"
)


def test_counts_established_connections_to_the_local_port_in_both_tables(tmp_path):
    net = tmp_path / "1234" / "net"
    net.mkdir(parents=True)
    (net / "tcp").write_text(TCP)
    (net / "tcp6").write_text(TCP6)
    assert established_connections(1234, 22, proc=str(tmp_path)) == 2
    assert established_connections(1234, 8888, proc=str(tmp_path)) == 1
    assert established_connections(1234, 2222, proc=str(tmp_path)) == 0


def test_unreadable_or_no_process_counts_none(tmp_path):
    assert established_connections(999999, 22, proc=str(tmp_path)) == 0
    assert established_connections(0, 22) == 0
    assert established_connections(None, 22) == 0
    assert established_connections(True, 22) == 0
