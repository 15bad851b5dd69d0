"""The SSH gateway's recording cost: terminal output through the gateway, recorded and
not, in the same run (issue 20).

An in-process gateway (``SshGateway``) relays ``ssh -tt`` sessions of the real OpenSSH
client to an asyncssh server standing in for the environment's sshd, which prints
``--mib`` MiB of text lines and exits (the platform side is the relay test's
``_Access``: tests/integration/test_ssh_gateway_relay.py). Per mode, ``--rounds``
sessions: wall time of the session (best, median) and the CPU time of this process
(gateway + stand-in sshd, the same work in both modes but for the recorder) per MiB.
The machine's load average is printed with the table.

    .venv/bin/python bench/ssh_recording.py [--mib 32] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncssh  # noqa: E402

from remotegpu.adapters.access.ssh_gateway import SshGateway  # noqa: E402
from remotegpu.adapters.storage.local_store import LocalObjectStore  # noqa: E402
from tests.integration.test_ssh_gateway_relay import _Access, _Target  # noqa: E402
from tests.support.components import binary  # noqa: E402


async def _environment(client_key: asyncssh.SSHKey, payload: bytes):
    host_key = asyncssh.generate_private_key("ssh-ed25519")

    async def handle(process: asyncssh.SSHServerProcess) -> None:
        process.stdout.write(payload)
        await process.stdout.drain()
        process.stdout.write_eof()
        process.exit(0)

    server = await asyncssh.create_server(
        asyncssh.SSHServer, "127.0.0.1", 0, server_host_keys=[host_key], encoding=None,
        authorized_client_keys=asyncssh.import_authorized_keys(client_key.export_public_key().decode()),
        process_factory=handle, allow_pty=True, line_editor=False)
    return server, host_key


async def _mode(tmp: Path, record: bool, payload: bytes, rounds: int) -> tuple[list[float], list[float]]:
    platform_key = asyncssh.generate_private_key("ssh-ed25519")
    env, env_key = await _environment(platform_key, payload)
    target = _Target("127.0.0.1", env.sockets[0].getsockname()[1], env_key.export_public_key().decode(),
                     platform_key.export_private_key().decode())
    access = _Access(target, LocalObjectStore(tmp / "objects"), record)
    gateway = SshGateway(access, host_key_path=tmp / "gw_key", port=0, bind="127.0.0.1", recheck_seconds=30)
    await gateway.start()
    key = tmp / "id"
    if not key.exists():
        key.write_bytes(asyncssh.generate_private_key("ssh-ed25519").export_private_key())
        key.chmod(0o600)
    walls, cpus = [], []
    try:
        for _ in range(rounds):
            cpu, wall = time.process_time(), time.perf_counter()
            proc = await asyncio.create_subprocess_exec(
                binary("ssh"), "-F", "/dev/null", "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                "-p", str(gateway.port), "-tt", f"{uuid.uuid4()}@127.0.0.1", "print",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
            out, _ = await proc.communicate()
            assert out == payload, (len(out), len(payload))
            while not (access.sessions and access.sessions[-1].ended_at):  # the recording is saved by then
                await asyncio.sleep(0.01)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
            access.sessions.clear()
    finally:
        await gateway.stop()
        env.close()
        await env.wait_closed()
    return walls, cpus


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    line = b"".join(b"%06d the quick brown fox jumps over the lazy dog 0123456789\r\n" % i for i in range(1000))
    payload = (line * (args.mib * 1024 * 1024 // len(line) + 1))[: args.mib * 1024 * 1024]
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for record in (False, True):
            walls, cpus = asyncio.run(_mode(Path(d) / str(record), record, payload, args.rounds))
            rows.append(("recorded" if record else "unrecorded (baseline)", min(walls), statistics.median(walls),
                         statistics.median(cpus) / args.mib))
    base = rows[0][2]
    print(f"{args.mib} MiB of terminal output per session, {args.rounds} sessions per mode; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("| mode | best s | median s | vs baseline | CPU ms per MiB (median) |")
    print("|---|---|---|---|---|")
    for name, best, median, cpu in rows:
        print(f"| {name} | {best:.2f} | {median:.2f} | {median / base * 100:.0f} % | {cpu * 1000:.0f} |")


if __name__ == "__main__":
    main()
