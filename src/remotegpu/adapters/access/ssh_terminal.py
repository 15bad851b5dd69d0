"""TerminalOpener over SSH: a session with a pty to the environment's own sshd.

For environments the server cannot ``docker exec`` into (every host but its own
machine's embedded one). The server logs in as root with the platform's key
(``PlatformSshKey``), which the access gateway installs in every environment's managed
authorized_keys block, and connects to the host's *private* address at the
environment's SSH host port (published on all of the host's addresses, the private one
included), so terminal traffic stays on the platform's private network.

The environment's host key is generated inside the container; the host's agent reads
it there and reports it (``Environment.ssh_host_key``), and from then on only that key
is accepted. Until the first report (seconds after the container starts) any key is,
like the Jupyter proxy's plain HTTP relying on the private network between the servers
and the hosts being trusted.
"""

from __future__ import annotations

import asyncio
import logging

import asyncssh

from remotegpu.adapters.access.platform_key import PlatformSshKey
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


def _pinned(host_key: str) -> tuple[list[asyncssh.SSHKey], list[asyncssh.SSHKey], list[asyncssh.SSHKey]] | None:
    """Only the key the agent read from the container is trusted; None (any key, the
    private network trusted) while it is not known yet."""
    if not host_key:
        return None
    return [asyncssh.import_public_key(host_key)], [], []


class SshTerminals:
    """Opens terminals over SSH with the platform's key, as ``user`` (root)."""

    def __init__(self, key: PlatformSshKey, *, user: str = "root", connect_timeout: float = 10.0) -> None:
        self._key = key
        self._user = user
        self._connect_timeout = connect_timeout
        self._client_key: asyncssh.SSHKey | None = None

    def _client_keys(self) -> list[asyncssh.SSHKey]:
        if self._client_key is None:
            self._client_key = asyncssh.import_private_key(self._key.private_key_pem())
        return [self._client_key]

    async def open(self, target: TerminalTarget, *, cols: int = 80, rows: int = 24) -> SshTerminalSession:
        if not target.ssh_port:
            raise EnvironmentRuntimeError(f"environment {target.env_id} has no SSH port")
        address = target.private_address
        try:
            conn = await asyncssh.connect(
                address, target.ssh_port, username=self._user, client_keys=self._client_keys(),
                known_hosts=_pinned(target.ssh_host_key), config=[], agent_path=None, agent_forwarding=False, x11_forwarding=False,
                preferred_auth="publickey", connect_timeout=self._connect_timeout, login_timeout=self._connect_timeout,
                keepalive_interval=30,
            )
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
