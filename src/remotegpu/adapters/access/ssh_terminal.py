"""TerminalOpener over SSH: a session with a pty to the environment's own sshd.

For environments the server cannot ``docker exec`` into (every host but its own
machine's embedded one). The server logs in as root with the environment's own client
key and connects to the host's *private* address at the environment's SSH host port
(published on all of the host's addresses, the private one included), so terminal
traffic stays on the platform's private network.

Both ends are the environment's own (``application/environments/credentials.py``): the
only host key accepted is the one the server generated for this environment and its
agent installed (never one read back from the container), and the client key is in
this environment's authorized_keys only. Whatever answers on that port — another
environment's sshd reached through a relay its owner planted, say — either proves it
holds this environment's host key or is hung up on before anything is sent; and no
other environment would accept the key anyway. Without both keys no connection is made.
"""

from __future__ import annotations

import asyncio
import logging

import asyncssh

from remotegpu.application.environments.ports import WORKSPACE_PATH, EnvironmentRuntimeError
from remotegpu.application.environments.terminal import TerminalTarget

log = logging.getLogger("remotegpu.ssh_terminal")

#: The same shell as the docker-exec terminal: a login shell (bash when there is one) in the workspace.
COMMAND = (
    f"cd {WORKSPACE_PATH} 2>/dev/null || cd; "
    "if command -v bash >/dev/null 2>&1; then exec bash -l; else exec sh -l; fi"
)
READ_SIZE = 65536


def _clamp(value: int) -> int:
    return max(1, min(int(value), 1000))


class SshTerminalSession:
    def __init__(self, conn: asyncssh.SSHClientConnection, process: asyncssh.SSHClientProcess) -> None:
        self._conn = conn
        self._process = process
        self._closed = False

    async def read(self) -> bytes:
        if self._closed:
            return b""
        try:
            return await self._process.stdout.read(READ_SIZE)
        except (asyncssh.Error, OSError):
            return b""

    async def write(self, data: bytes) -> None:
        if self._closed or not data:
            return
        try:
            self._process.stdin.write(data)
            await self._process.stdin.drain()
        except (asyncssh.Error, OSError, BrokenPipeError):
            pass  # the shell is gone; the next read says so

    async def resize(self, cols: int, rows: int) -> None:
        if self._closed:
            return
        try:
            self._process.change_terminal_size(_clamp(cols), _clamp(rows))
        except (asyncssh.Error, OSError):
            pass

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._process.close()
        self._conn.close()
        try:
            await asyncio.wait_for(self._conn.wait_closed(), timeout=5)
        except (asyncio.TimeoutError, asyncssh.Error, OSError):
            pass


def _pinned(host_key: str) -> tuple[list[asyncssh.SSHKey], list[asyncssh.SSHKey], list[asyncssh.SSHKey]]:
    """Known hosts for asyncssh: only the environment's host key is trusted (no CA, none revoked)."""
    return [asyncssh.import_public_key(host_key)], [], []


class SshTerminals:
    """Opens terminals over SSH with each environment's own keys, as ``user`` (root)."""

    def __init__(self, *, user: str = "root", connect_timeout: float = 10.0) -> None:
        self._user = user
        self._connect_timeout = connect_timeout

    async def open(self, target: TerminalTarget, *, cols: int = 80, rows: int = 24) -> SshTerminalSession:
        if not target.ssh_port:
            raise EnvironmentRuntimeError(f"environment {target.env_id} has no SSH port")
        if not target.ssh_host_key or not target.ssh_client_key:
            # Environments made before per-environment keys get theirs on their host's next beat.
            raise EnvironmentRuntimeError(f"environment {target.env_id}: its SSH keys are not ready yet; try again in a moment")
        try:
            known_hosts = _pinned(target.ssh_host_key)
            client_key = asyncssh.import_private_key(target.ssh_client_key)
        except (asyncssh.KeyImportError, ValueError) as exc:
            raise EnvironmentRuntimeError(f"environment {target.env_id}: its SSH keys are unusable ({exc})") from None
        address = target.private_address
        try:
            conn = await asyncssh.connect(
                address, target.ssh_port, username=self._user, client_keys=[client_key],
                known_hosts=known_hosts, config=[], agent_path=None, agent_forwarding=False, x11_forwarding=False,
                preferred_auth="publickey", connect_timeout=self._connect_timeout, login_timeout=self._connect_timeout,
                keepalive_interval=30,
            )
        except asyncssh.HostKeyNotVerifiable as exc:
            # Something other than this environment's sshd answers on its port (a relay
            # to another environment, a user's own sshd with other keys): never log in.
            log.warning("terminal of %s: %s:%s presented a host key other than the environment's: %s",
                        target.env_id, address, target.ssh_port, exc)
            raise EnvironmentRuntimeError(
                f"environment {target.env_id}: its SSH port did not present the environment's host key; connection refused"
            ) from None
        except (asyncssh.Error, OSError, asyncio.TimeoutError) as exc:
            log.info("terminal of %s: SSH to %s:%s failed: %s", target.env_id, address, target.ssh_port, exc)
            raise EnvironmentRuntimeError(f"environment {target.env_id}: its SSH does not answer ({exc.__class__.__name__})") from None
        try:
            process = await conn.create_process(
                COMMAND, term_type="xterm-256color", term_size=(_clamp(cols), _clamp(rows)), request_pty="force",
                encoding=None,
            )
        except (asyncssh.Error, OSError) as exc:
            conn.close()
            raise EnvironmentRuntimeError(f"environment {target.env_id}: cannot start a shell over SSH: {exc}") from None
        return SshTerminalSession(conn, process)
