"""The SSH gateway's relay of terminal sessions, recorded and not, with the real OpenSSH
client against the real gateway (``SshGateway``) and an asyncssh server standing in for
the environment's sshd: it sends a burst of output, EOF, the exit status and closes
at once, as sshd does when a command ends — the order in which a recorder that queues
the output loses its tail (the EOF reaches the client before the queued bytes).

The platform side (who may enter, the environment's address and keys) is answered by a
``GatewayAccess`` whose audit record is in memory and whose recordings go to a real
object store on disk; tests/integration/test_ssh_gateway.py runs the whole platform on
Docker with the environment's real sshd."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import asyncssh
import pytest

from remotegpu.adapters.access.ssh_gateway import SshGateway
from remotegpu.adapters.access.ssh_sessions import InMemorySshSessionLog
from remotegpu.adapters.storage.local_store import LocalObjectStore
from remotegpu.application.environments.ssh_gateway import GatewayAccess, GatewayLogin, SshSession
from remotegpu.application.shared.clock import SystemClock
from remotegpu.domain.identity.models import User
from tests.support.components import binary

LINES = 20000
TAIL = b"tail-of-the-session\r\n"


@dataclass
class _Target:
    private_address: str
    ssh_port: int
    ssh_host_key: str
    ssh_client_key: str


class _Access(GatewayAccess):
    """Everyone may enter the one environment; the audit record and recordings are real."""

    def __init__(self, target: _Target, store: LocalObjectStore, record: bool) -> None:
        super().__init__(uow=None, entry=None, log=InMemorySshSessionLog(), clock=SystemClock(),  # type: ignore[arg-type]
                         recordings=store, record_sessions=record)
        self._target = target
        self.user = User(id="u1", username="alice", email="a@example.com", password_hash="",
                         created_at=datetime.now(timezone.utc))
        self.sessions: list[SshSession] = []

    async def authenticate(self, login, public_key, fingerprint):
        return GatewayLogin(self.user, login, fingerprint)

    async def target(self, user_id, env_id):
        return self._target

    async def still_allowed(self, user_id, env_id, key):
        return True

    async def record_activity(self, env_id):
        return None

    async def opened(self, user_id, env_id, kind, client_address, fingerprint):
        session = SshSession(id=str(uuid.uuid4()), user_id=user_id, username="alice", environment_id=env_id,
                             workspace_id="w1", environment_name="env", kind=kind, client_address=client_address,
                             key_fingerprint=fingerprint, started_at=datetime.now(timezone.utc))
        await self._log.add(session)
        self.sessions.append(session)
        return session


async def _environment(client_key: asyncssh.SSHKey) -> tuple[asyncssh.SSHAcceptor, asyncssh.SSHKey]:
    """The stand-in sshd: ``burst N`` prints N lines and a tail, then EOF, exit 3, close."""
    host_key = asyncssh.generate_private_key("ssh-ed25519")

    async def handle(process: asyncssh.SSHServerProcess) -> None:
        n = int((process.command or "burst 0").split()[1])
        process.stdout.write(b"".join(b"line-%d\r\n" % i for i in range(1, n + 1)) + TAIL)
        process.stdout.write_eof()
        process.exit(3)

    server = await asyncssh.create_server(
        asyncssh.SSHServer, "127.0.0.1", 0, server_host_keys=[host_key], encoding=None,
        authorized_client_keys=asyncssh.import_authorized_keys(client_key.export_public_key().decode()),
        process_factory=handle, allow_pty=True, line_editor=False,
    )
    return server, host_key


async def _run(tmp: Path, record: bool, rounds: int) -> tuple[list[bytes], list[bytes], _Access]:
    platform_key = asyncssh.generate_private_key("ssh-ed25519")
    env, env_host_key = await _environment(platform_key)
    target = _Target("127.0.0.1", env.sockets[0].getsockname()[1], env_host_key.export_public_key().decode(),
                     platform_key.export_private_key().decode())
    access = _Access(target, LocalObjectStore(tmp / "objects"), record)
    gateway = SshGateway(access, host_key_path=tmp / "gw_host_key", port=0, bind="127.0.0.1", recheck_seconds=5)
    await gateway.start()
    user_key = tmp / "id_ed25519"
    if not user_key.exists():
        user_key.write_bytes(asyncssh.generate_private_key("ssh-ed25519").export_private_key())
        user_key.chmod(0o600)
    outputs, casts = [], []
    try:
        for _ in range(rounds):
            before = len(access.sessions)
            proc = await asyncio.create_subprocess_exec(
                binary("ssh"), "-F", "/dev/null", "-i", str(user_key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                "-p", str(gateway.port), "-tt", f"{uuid.uuid4()}@127.0.0.1", f"burst {LINES}",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await asyncio.wait_for(proc.communicate(), 60)  # stdin closes at once, as piping into ssh -tt does
            assert proc.returncode == 3, err
            outputs.append(out)
            for _ in range(200):  # the record closes a moment after the client went
                if len(access.sessions) > before and access.sessions[-1].ended_at:
                    break
                await asyncio.sleep(0.05)
            session = access.sessions[-1]
            assert session.ended_at is not None
            if record:
                assert session.recording
                _, chunks = await access.recording(User(**{**access.user.__dict__, "is_admin": True}), session.id)
                casts.append(b"".join([c async for c in chunks]))
            else:
                assert session.recording is None
    finally:
        await gateway.stop()
        env.close()
        await env.wait_closed()
    return outputs, casts, access


@pytest.mark.parametrize("record", [False, True], ids=["unrecorded", "recorded"])
def test_the_tail_of_a_terminal_session_reaches_the_client_recorded_or_not(tmp_path, record):
    outputs, casts, _ = asyncio.run(_run(tmp_path, record, rounds=5))
    expected = b"".join(b"line-%d\r\n" % i for i in range(1, LINES + 1)) + TAIL
    for out in outputs:
        assert out == expected  # every byte, in order, the tail included: five times in a row
    for cast in casts:
        lines = cast.decode().splitlines()
        assert json.loads(lines[0])["version"] == 2
        events = [json.loads(line) for line in lines[1:]]
        assert "".join(text for _, _, text in events).encode() == expected  # the recording is what the client got
