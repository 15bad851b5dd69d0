"""The SSH gateway (the bastion): one SSH port for every environment, with asyncssh.

Two ways through (login names: ``application/environments/ssh_gateway.py``):

* ``ssh <env id>@gateway -p PORT`` — the gateway authenticates the user by their
  registered keys, checks they may enter (the console's rule), then logs in to the
  environment's sshd itself, exactly as the web terminal's SSH bridge does (the host's
  private address, the environment's pinned host key, its own client key) and relays
  every session channel over that connection: shell with a pty, exec (scp, rsync),
  subsystem sftp, window changes, signals, exit status. ``-L`` forwards are relayed as
  direct-tcpip channels of that connection (the environment's sshd opens them).
* ``ssh -J <username>@gateway:PORT root@<env id>`` — a jump login: only forwarding to
  ``<env id>:22`` is served, relayed as a plain TCP stream to the environment's sshd;
  the client then logs in end to end with its own key (which the access gateway has put
  into that environment's authorized_keys because its owner may enter). The gateway
  never sees that session's contents and adds the least work: the fast path for bulk
  copies, and what VS Code Remote-SSH (``ProxyJump``) uses.

Every live connection is checked again every ``recheck_seconds``; when its key was
deleted, its account disabled, its membership removed or its environment stopped, the
connection is dropped ("revoked"). Each stay is written to the audit log (who, which
environment, from where, when, how long, what ran).

With ``REMOTEGPU_SSH_GATEWAY_RECORD`` on, the login banner says so and the terminal
sessions (those with a pty) of each connection are recorded as one asciicast v2 file
(``CastRecorder``): the output as it comes from the environment, and window changes.
``_RecordedProcess`` reads along where asyncssh hands the environment's bytes on; the
relay itself is the unrecorded one. The file goes to object storage when the connection
ends — a revoked or stopped one too — and the audit record names it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import time
from pathlib import Path
from typing import Any

import asyncssh
from asyncssh.forward import SSHForwarder
from asyncssh.misc import TerminalSizeChanged
from asyncssh.process import SSHClientProcess, SSHServerProcess
from asyncssh.sftp import MIN_SFTP_VERSION
from asyncssh.stream import SSHReader, SSHWriter

from remotegpu.application.environments.ssh_gateway import (
    RECORDING_BANNER,
    CastRecorder,
    GatewayAccess,
    GatewayLogin,
    SshSession,
    is_environment_login,
)
from remotegpu.application.environments.terminal import TerminalTarget
from remotegpu.domain.shared.errors import DomainError, NotFound

log = logging.getLogger("remotegpu.ssh_gateway")

#: Offered to clients: AES-GCM first (AES-NI; asyncssh's ChaCha20-Poly1305 costs more CPU per byte).
ENCRYPTION_ALGS = ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes256-ctr",
                   "chacha20-poly1305@openssh.com"]
MAX_CHANNEL_LABELS = 20
#: Channel windows of both legs (asyncssh's default is 2 MiB): bulk copies stall less on window updates.
WINDOW = 8 * 1024 * 1024
#: Larger channel packets from clients (OpenSSH sends up to what it has buffered): fewer packets to relay.
MAX_PACKET = 256 * 1024


def load_or_create_host_key(path: Path) -> asyncssh.SSHKey:
    """The gateway's own host key, made once (ed25519, mode 0600) and kept: clients pin it."""
    if path.exists():
        return asyncssh.read_private_key(str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    key = asyncssh.generate_private_key("ssh-ed25519", comment="remotegpu-ssh-gateway")
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.export_private_key("openssh"))
    os.replace(tmp, path)
    return key


def _pinned(host_key: str) -> tuple[list[asyncssh.SSHKey], list[asyncssh.SSHKey], list[asyncssh.SSHKey]]:
    return [asyncssh.import_public_key(host_key)], [], []


class _TrackedForwarder(SSHForwarder):
    """The channel side of a relay. What the far end says before the channel is open
    (sshd's banner comes at once) is kept until it is, not dropped; and the connection
    hears when the channel ends."""

    def __init__(self, peer: SSHForwarder, on_close=None) -> None:
        self._pending: list[bytes] = []
        super().__init__(peer)
        self._on_close = on_close
        early = getattr(peer, "_inpbuf", b"")  # what the far end said before it had a peer
        if early:
            self._pending.append(early)
            peer._inpbuf = b""

    def write(self, data: bytes) -> None:
        if self._transport is None:
            self._pending.append(data)
            return
        super().write(data)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        pending, self._pending = self._pending, []
        for data in pending:
            super().write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        on_close, self._on_close = self._on_close, None
        if on_close:
            on_close()
        super().connection_lost(exc)


class _RecordedProcess(SSHClientProcess):
    """The environment's side of a recorded terminal session. The relay is asyncssh's own
    process-to-process redirect, exactly as unrecorded; the recorder only reads along at
    the one place every byte from the environment's sshd passes, in arrival order, before
    it is handed on (or buffered until the redirect is set): nothing is queued or
    re-ordered, EOF, exit status and flow control are untouched, and all the output is
    in the recording once the channel is closed."""

    def __init__(self, recorder: CastRecorder) -> None:
        super().__init__()
        self._recorder = recorder

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self._recorder.output(data, time.time())  # stdout and stderr: both are the terminal's
        super().data_received(data, datatype)

    def feed_exception(self, exc: Exception) -> None:
        if isinstance(exc, TerminalSizeChanged):
            self._recorder.resize(exc.width, exc.height, time.time())
        super().feed_exception(exc)


class _RelayedProcess(SSHServerProcess):
    """A session the environment's sshd serves: every subsystem (sftp included) is
    relayed, not served here (asyncssh would refuse sftp without an sftp factory)."""

    def subsystem_requested(self, subsystem: str) -> bool:
        return True

    def session_started(self) -> None:
        # asyncssh would run its own SFTP server for "sftp": always start the relay instead.
        assert self._chan is not None and self._conn is not None
        stdin = SSHReader(self, self._chan)
        stdout = SSHWriter(self, self._chan)
        stderr = SSHWriter(self, self._chan, asyncssh.EXTENDED_DATA_STDERR)
        handler = self._session_factory(stdin, stdout, stderr)
        if inspect.isawaitable(handler):
            self._conn.create_task(handler, stdin.logger)


class _Connection(asyncssh.SSHServer):
    def __init__(self, gateway: "SshGateway") -> None:
        self._gw = gateway
        self.conn: asyncssh.SSHServerConnection | None = None
        self.peer = ""
        self.login: GatewayLogin | None = None
        self.key = ""
        self._verdicts: dict[str, GatewayLogin | None] = {}  # by (user name, key)
        self._upstream: asyncssh.SSHClientConnection | None = None
        self._upstream_lock = asyncio.Lock()
        self.session: SshSession | None = None  # the env login's audit record (once it reached the environment)
        self.jumps: dict[int, tuple[str, SshSession]] = {}  # jump channels: their environment and record
        self._closed = False
        self.end_reason = "closed"
        self._recorder: CastRecorder | None = None  # the terminal sessions of this connection, when recorded

    # --- connection and authentication ---------------------------------------------

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        peer = conn.get_extra_info("peername")
        self.peer = str(peer[0]) if peer else ""

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._gw._live.discard(self)
        self._gw._spawn(self._finish())

    def begin_auth(self, username: str) -> bool:
        if self._gw.access.record_sessions and self.conn is not None:
            self.conn.send_auth_banner(RECORDING_BANNER)  # before any key is offered: nobody enters unaware
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        text = key.export_public_key("openssh").decode()
        asked = f"{username}\n{text}"  # a client may change the user name between attempts
        if asked not in self._verdicts:
            try:
                self._verdicts[asked] = await self._gw.access.authenticate(username, text, key.get_fingerprint("sha256"))
            except Exception:  # noqa: BLE001 - a database hiccup refuses the key, never lets it in
                log.exception("ssh gateway: checking a key for %r failed", username)
                return False
        verdict = self._verdicts[asked]
        if verdict is None:
            return False
        self.login, self.key = verdict, text
        return True

    def auth_completed(self) -> None:
        self._gw._live.add(self)
        assert self.login is not None
        log.info("ssh gateway: %s (%s) logged in from %s for %s", self.login.user.username, self.login.key_fingerprint,
                 self.peer, self.login.env_id or "jumps")

    # --- the environment's sshd ----------------------------------------------------

    async def _target(self, env_id: str) -> TerminalTarget:
        assert self.login is not None
        return await self._gw.access.target(self.login.user.id, env_id)

    async def _upstream_connection(self) -> asyncssh.SSHClientConnection:
        assert self.login is not None and self.login.env_id
        async with self._upstream_lock:
            if self._upstream is not None:
                return self._upstream
            target = await self._target(self.login.env_id)
            if not target.ssh_host_key or not target.ssh_client_key:
                raise NotFound("the environment's SSH keys are not ready yet; try again in a moment")
            try:
                self._upstream = await asyncssh.connect(
                    target.private_address, target.ssh_port, username="root",
                    client_keys=[asyncssh.import_private_key(target.ssh_client_key)],
                    known_hosts=_pinned(target.ssh_host_key), config=[], agent_path=None, agent_forwarding=False,
                    x11_forwarding=False, preferred_auth="publickey", connect_timeout=10, login_timeout=10,
                    keepalive_interval=30, encryption_algs=ENCRYPTION_ALGS, compression_algs=None, window=WINDOW,
                )
            except (asyncssh.Error, OSError, asyncio.TimeoutError) as exc:
                log.info("ssh gateway: %s unreachable at %s:%s: %s", self.login.env_id, target.private_address,
                         target.ssh_port, exc)
                raise NotFound(f"the environment's SSH does not answer ({exc.__class__.__name__})") from None
            if self._closed:
                self._upstream.close()
                raise NotFound("connection closed")
            self.session = await self._gw.access.opened(
                self.login.user.id, self.login.env_id, "session", self.peer, self.login.key_fingerprint)
            return self._upstream

    def _label(self, record: SshSession | None, label: str) -> None:
        if record is not None and len(record.channels) < MAX_CHANNEL_LABELS:
            record.channels.append(label[:80])

    # --- session channels (ssh ENV@gateway) ----------------------------------------

    def session_requested(self) -> Any:
        assert self.login is not None
        if self.login.env_id is None:
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
                "this is a jump login: use ssh -J <you>@gateway root@<environment id>, or ssh <environment id>@gateway",
            )
        return _RelayedProcess(self._relay_session, None, MIN_SFTP_VERSION, False)

    async def _relay_session(self, process: asyncssh.SSHServerProcess) -> None:
        try:
            upstream = await self._upstream_connection()
        except DomainError as exc:
            process.stderr.write(f"remotegpu: {exc}\r\n".encode())
            process.exit(1)
            return
        self._label(self.session, process.subsystem or ("exec" if process.command else "shell"))
        factory: Any = SSHClientProcess
        if self._gw.access.record_sessions and process.term_type and not process.subsystem:
            if self._recorder is None:  # terminal sessions only: copies (scp, sftp, rsync) never land in it
                width, height = process.term_size[0] or 80, process.term_size[1] or 24
                self._recorder = CastRecorder(width, height, process.term_type, time.time())
            recorder = self._recorder
            factory = lambda: _RecordedProcess(recorder)  # noqa: E731
        try:  # upstream.create_process, with the process class chosen
            _, remote = await upstream.create_session(
                factory, command=process.command, subsystem=process.subsystem, env=process.env,
                term_type=process.term_type, term_size=process.term_size, term_modes=process.term_modes, encoding=None,
            )
            await remote.redirect(process.stdin, process.stdout, process.stderr)
        except (asyncssh.Error, OSError) as exc:
            process.stderr.write(f"remotegpu: the environment refused the session: {exc}\r\n".encode())
            process.exit(1)
            return
        await remote.wait_closed()
        signal = remote.exit_signal
        if signal:
            process.exit_with_signal(*signal)
        else:
            process.exit(remote.exit_status if remote.exit_status is not None else 255)

    # --- direct-tcpip (ssh -J, ssh -L) ---------------------------------------------

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str, orig_port: int) -> Any:
        assert self.login is not None
        if is_environment_login(dest_host) and dest_port == 22:
            return self._jump(dest_host)
        if self.login.env_id is None:
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, "a jump login forwards to <environment id>:22 only")
        return self._forward(dest_host, dest_port)

    async def _forward(self, dest_host: str, dest_port: int) -> SSHForwarder:
        try:
            upstream = await self._upstream_connection()
        except DomainError as exc:
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, str(exc)) from None
        self._label(self.session, f"forward:{dest_host}:{dest_port}")
        try:
            _, peer = await upstream.create_connection(SSHForwarder, dest_host, dest_port)
        except asyncssh.ChannelOpenError:
            raise
        except (asyncssh.Error, OSError) as exc:
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, str(exc)) from None
        return _TrackedForwarder(peer)

    async def _jump(self, env_id: str) -> SSHForwarder:
        assert self.login is not None
        try:
            target = await self._target(env_id)
        except DomainError:
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, "environment not found or not running") from None
        try:
            _, peer = await asyncio.get_running_loop().create_connection(SSHForwarder, target.private_address, target.ssh_port)
        except OSError as exc:
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, f"the environment's SSH does not answer ({exc})") from None
        # Paired before the next await: sshd's banner arrives at once and must find its way.
        record: list[SshSession] = []
        token = object()

        def closed() -> None:
            self.jumps.pop(id(token), None)
            if record:
                self._gw._spawn(self._gw.access.closed(record[0], self.end_reason))

        forwarder = _TrackedForwarder(peer, closed)
        record.append(await self._gw.access.opened(self.login.user.id, env_id, "jump", self.peer, self.login.key_fingerprint))
        self.jumps[id(token)] = (env_id, record[0])
        return forwarder

    # --- revocation and the end ----------------------------------------------------

    async def recheck(self) -> None:
        """Drop the connection when its person may no longer be here."""
        if self._closed or self.login is None or self.conn is None:
            return
        user_id = self.login.user.id
        envs: list[str | None] = [self.login.env_id] if self.login.env_id else []
        envs += [env_id for env_id, _ in list(self.jumps.values())]
        if not envs:
            envs = [None]
        for env_id in dict.fromkeys(envs):
            if not await self._gw.access.still_allowed(user_id, env_id, self.key):
                log.info("ssh gateway: access of %s to %s revoked; dropping the connection from %s",
                         self.login.user.username, env_id or "jumps", self.peer)
                self.end_reason = "revoked"
                self.conn.disconnect(asyncssh.DISC_BY_APPLICATION, "access revoked")
                return
        for env_id in envs:
            if env_id and (self.session or self.jumps):
                await self._gw.access.record_activity(env_id)

    async def _finish(self) -> None:
        if self._upstream is not None:
            self._upstream.close()
        if self.session is not None:
            if self._recorder is not None:  # every session channel is closed: the recording is whole
                try:
                    await self._gw.access.save_recording(self.session, self._recorder.cast())
                except Exception:  # noqa: BLE001 - the audit record is still written
                    log.exception("ssh gateway: saving the recording of %s failed", self.session.id)
            await self._gw.access.closed(self.session, self.end_reason)


class SshGateway:
    """The listener, its connections and the revocation loop."""

    def __init__(self, access: GatewayAccess, *, host_key_path: Path, port: int, bind: str = "0.0.0.0",
                 recheck_seconds: float = 2.0) -> None:
        self.access = access
        self._host_key_path = host_key_path
        self._port = port
        self._bind = bind
        self._recheck_seconds = recheck_seconds
        self._server: asyncssh.SSHAcceptor | None = None
        self._live: set[_Connection] = set()
        self._tasks: set[asyncio.Task] = set()
        self._loop_task: asyncio.Task | None = None
        self.host_key: asyncssh.SSHKey | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            return self._port
        return self._server.sockets[0].getsockname()[1]

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start(self) -> None:
        self.host_key = load_or_create_host_key(self._host_key_path)
        self._server = await asyncssh.create_server(
            lambda: _Connection(self), self._bind, self._port, server_host_keys=[self.host_key],
            encoding=None, line_editor=False, allow_scp=False, sftp_factory=None, agent_forwarding=False,
            x11_forwarding=False, allow_pty=True, login_timeout=30, keepalive_interval=30,
            encryption_algs=ENCRYPTION_ALGS, compression_algs=None, window=WINDOW, max_pktsize=MAX_PACKET,
            server_version="RemoteGPU_gateway",
        )
        self._loop_task = asyncio.create_task(self._recheck_loop())
        log.info("ssh gateway: listening on %s:%s (host key %s)", self._bind, self.port,
                 self.host_key.get_fingerprint("sha256"))

    async def _recheck_loop(self) -> None:
        while True:
            await asyncio.sleep(self._recheck_seconds)
            for connection in list(self._live):
                try:
                    await connection.recheck()
                except Exception:  # noqa: BLE001 - keep checking the others
                    log.exception("ssh gateway: rechecking a connection failed")

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for connection in list(self._live):
            connection.end_reason = "gateway_stopped"
            if connection.conn is not None:
                connection.conn.close()
        for _ in range(50):
            if not self._live and not self._tasks:
                break
            await asyncio.sleep(0.05)
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
