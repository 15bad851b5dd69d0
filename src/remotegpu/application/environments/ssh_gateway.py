"""The SSH gateway's decisions (the bastion): who is knocking, where they may go, and
the record of who went where.

The adapter (``remotegpu.adapters.access.ssh_gateway``) speaks SSH; everything it
decides comes from here, and here nothing new is decided: entering an environment is
``EnvironmentEntry.load_enterable`` — the console's and the web terminal's rule — and
where the environment's sshd is reached, with which host key and client key, is
``EnvironmentEntry.ssh_target``, the web terminal's SSH bridge (a Kubernetes environment's
Pod IP and port 22 when the servers reach the cluster).

Login names (the part before ``@`` in ``ssh NAME@gateway``):

* an environment's id (a UUID, 36 characters): the session is for that environment. The
  offered key must be a registered key of someone who may enter it (``entrants``, then
  ``load_enterable`` for that person);
* a platform username (at most 32 characters, so never an id): a jump login
  (``ssh -J alice@gateway root@<env id>``). Only forwarding to ``<env id>:22`` is served;
  the key must be one of that user's registered keys.

``still_allowed`` is asked again every few seconds for every live session: a key deleted,
an account disabled, a membership removed, an environment unshared or stopped ends it.
"""

from __future__ import annotations

import codecs
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import AsyncIterator, Protocol

from remotegpu.application.environments.entry import EnvironmentEntry, entrants
from remotegpu.application.environments.terminal import TerminalTarget
from remotegpu.application.shared.ports import Clock, UnitOfWorkFactory
from remotegpu.application.storage.ports import ObjectNotFound, ObjectStore
from remotegpu.domain.identity.models import User
from remotegpu.application.workspaces.service import authorize
from remotegpu.domain.shared.errors import Conflict, DomainError, NotFound, PermissionDenied
from remotegpu.domain.workspaces.models import Role
from remotegpu.domain.shared.ids import new_id

ENV_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def is_environment_login(login: str) -> bool:
    return bool(ENV_ID.fullmatch(login))


def normalise_key(public_key: str) -> str:
    """``type base64`` of an OpenSSH public key line (no comment, no options)."""
    parts = public_key.split()
    return " ".join(parts[:2]) if len(parts) >= 2 else public_key.strip()


@dataclass(frozen=True)
class GatewayLogin:
    user: User
    env_id: str | None  # None: a jump login (forwarding to environments only)
    key_fingerprint: str


@dataclass
class SshSession:
    """One stay in an environment through the gateway (the audit record)."""

    id: str
    user_id: str
    username: str
    environment_id: str
    workspace_id: str
    environment_name: str
    kind: str  # "session" (ssh ENV@gateway) or "jump" (ssh -J)
    client_address: str
    key_fingerprint: str
    started_at: datetime
    ended_at: datetime | None = None
    end_reason: str = ""  # "closed", "revoked", "gateway_stopped", "unreachable"
    channels: list[str] = field(default_factory=list)  # "shell", "exec", "sftp", "forward:HOST:PORT" (first few)
    recording: str | None = None  # object key of the session's asciicast (interactive sessions, when recording is on)

    @property
    def duration_seconds(self) -> float | None:
        return (self.ended_at - self.started_at).total_seconds() if self.ended_at else None


class SshSessionLog(Protocol):
    async def add(self, session: SshSession) -> None: ...
    async def finish(self, session_id: str, ended_at: datetime, end_reason: str, channels: list[str],
                     recording: str | None = None) -> None: ...
    async def get(self, session_id: str) -> SshSession | None: ...
    async def list(
        self, *, workspace_id: str | None, environment_id: str | None, user_id: str | None, limit: int, offset: int,
    ) -> tuple[list[SshSession], int]:
        """Newest first."""
        ...


#: What the login banner says when interactive sessions are recorded.
RECORDING_BANNER = ("RemoteGPU: interactive sessions through this gateway are recorded "
                    "(terminal output, for the platform's administrators).\r\n")
#: A recording stops growing here (the session goes on; the cast says it was cut).
MAX_RECORDING_BYTES = 32 * 1024 * 1024


class CastRecorder:
    """An asciicast v2 file of one terminal session: a header line, then
    ``[seconds, "o", text]`` for output and ``[seconds, "r", "COLSxROWS"]`` for resizes."""

    def __init__(self, width: int, height: int, term: str, started: float) -> None:
        self._started = started
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        header = {"version": 2, "width": max(1, width), "height": max(1, height), "timestamp": int(started),
                  "env": {"TERM": term or "xterm"}}
        self._lines = [json.dumps(header)]
        self._size = len(self._lines[0])
        self.truncated = False
        self._last = 0.0

    def _event(self, now: float, kind: str, text: str) -> None:
        if self.truncated or not text:
            return
        self._last = max(self._last, now - self._started)  # never backwards (the clock may step)
        line = json.dumps([round(self._last, 6), kind, text], ensure_ascii=False)
        if self._size + len(line) > MAX_RECORDING_BYTES:
            self.truncated = True
            self._lines.append(json.dumps([round(self._last, 6), "o", "\r\n[remotegpu: the recording stops here (size limit)]\r\n"]))
            return
        self._lines.append(line)
        self._size += len(line) + 1

    def output(self, data: bytes, now: float) -> None:
        self._event(now, "o", self._decoder.decode(data))

    def resize(self, width: int, height: int, now: float) -> None:
        self._event(now, "r", f"{width}x{height}")

    def cast(self) -> bytes:
        """The file so far (a multi-byte character cut at the end is written as U+FFFD)."""
        tail = self._decoder.decode(b"", True)
        self._decoder.reset()
        lines = self._lines if self.truncated or not tail else [*self._lines, json.dumps(
            [round(self._last, 6), "o", tail], ensure_ascii=False)]
        return ("\n".join(lines) + "\n").encode()


class GatewayAccess:
    def __init__(self, uow: UnitOfWorkFactory, entry: EnvironmentEntry, log: SshSessionLog, clock: Clock,
                 recordings: ObjectStore | None = None, record_sessions: bool = False) -> None:
        self._uow = uow
        self._entry = entry
        self._log = log
        self._clock = clock
        self._recordings = recordings
        #: Interactive sessions are recorded (and the banner says so).
        self.record_sessions = bool(record_sessions and recordings is not None)

    async def authenticate(self, login: str, public_key: str, fingerprint: str) -> GatewayLogin | None:
        """The person ``public_key`` belongs to, if it may log in as ``login``; None otherwise."""
        key = normalise_key(public_key)
        async with self._uow() as uow:
            if is_environment_login(login):
                env = await uow.environments.get(login)
                if env is None:
                    return None
                candidates = [e.user_id for e in await entrants(uow, env) if key in {normalise_key(k) for k in e.public_keys}]
                users = [u for u in [await uow.users.get(uid) for uid in candidates] if u is not None and u.is_active]
            else:
                user = await uow.users.get_by_username(login)
                if user is None or not user.is_active:
                    return None
                keys = {normalise_key(k.public_key) for k in await uow.ssh_keys.list_for_user(user.id)}
                users = [user] if key in keys else []
        if not is_environment_login(login):
            return GatewayLogin(users[0], None, fingerprint) if users else None
        for user in users:  # one key registered by two entrants: the first who may enter
            try:
                await self._entry.load_enterable(user, login)
            except Conflict:
                return GatewayLogin(user, login, fingerprint)  # may enter; "not running" is said on the session
            except DomainError:
                continue
            return GatewayLogin(user, login, fingerprint)
        return None

    async def target(self, user_id: str, env_id: str) -> TerminalTarget:
        """Where ``env_id``'s sshd is, for ``user_id`` (the console's rule): ``NotFound``
        when they may not enter, ``Conflict`` (``not_running``) when it does not run."""
        async with self._uow() as uow:
            user = await uow.users.get(user_id)
        if user is None or not user.is_active:
            raise NotFound("environment not found")
        env, host, ports = await self._entry.load_enterable(user, env_id)
        if host is None or not ports.get("ssh"):
            raise Conflict("the environment has no SSH port", code="no_ssh")
        return await self._entry.ssh_target(env, host, ports)

    async def still_allowed(self, user_id: str, env_id: str | None, key: str) -> bool:
        """Whether the key is still registered to an active ``user_id`` who may still
        enter ``env_id`` (None: a jump login, which only needs the key)."""
        normal = normalise_key(key)
        async with self._uow() as uow:
            user = await uow.users.get(user_id)
            if user is None or not user.is_active:
                return False
            if normal not in {normalise_key(k.public_key) for k in await uow.ssh_keys.list_for_user(user_id)}:
                return False
        if env_id is None:
            return True
        try:
            await self._entry.load_enterable(user, env_id)
        except DomainError:
            return False
        return True

    async def record_activity(self, env_id: str) -> None:
        await self._entry.record_activity(env_id)

    # --- the audit record ---------------------------------------------------------

    async def list_sessions(
        self, actor: User, *, workspace_id: str | None, environment_id: str | None = None, user_id: str | None = None,
        limit: int = 50, offset: int = 0,
    ) -> tuple[list[SshSession], int]:
        """Stays through the gateway, newest first: a workspace's for its admins and owners
        (``NotFound`` outside it, ``PermissionDenied`` below admin); everyone's for platform admins."""
        if workspace_id is not None:
            async with self._uow() as uow:
                await authorize(uow, actor, workspace_id, Role.ADMIN)
        elif not actor.is_admin:
            raise PermissionDenied("platform admins only", code="admin_required")
        return await self._log.list(workspace_id=workspace_id, environment_id=environment_id, user_id=user_id,
                                    limit=limit, offset=offset)


    async def opened(self, user_id: str, env_id: str, kind: str, client_address: str, fingerprint: str) -> SshSession:
        async with self._uow() as uow:
            user = await uow.users.get(user_id)
            env = await uow.environments.get(env_id)
        session = SshSession(
            id=new_id(), user_id=user_id, username=user.username if user else "", environment_id=env_id,
            workspace_id=env.workspace_id if env else "", environment_name=env.name if env else "", kind=kind,
            client_address=client_address[:64], key_fingerprint=fingerprint[:128], started_at=self._clock.now(),
        )
        await self._log.add(session)
        return session

    async def save_recording(self, session: SshSession, cast: bytes) -> None:
        """Keep ``session``'s asciicast in object storage; the audit record names it when it closes."""
        if self._recordings is None:
            return
        key = f"ssh-recordings/{session.workspace_id or 'none'}/{session.id}.cast"

        async def chunks() -> AsyncIterator[bytes]:
            yield cast

        await self._recordings.ensure_ready()
        await self._recordings.put(key, chunks())
        session.recording = key

    async def recording(self, actor: User, session_id: str) -> tuple[SshSession, AsyncIterator[bytes]]:
        """A session's asciicast, for platform admins (``NotFound`` when it has none, and for
        everyone else: whether a session was recorded is not told to non-admins)."""
        if not actor.is_admin:
            raise NotFound("no recording of this session")
        session = await self._log.get(session_id)
        if session is None or not session.recording or self._recordings is None:
            raise NotFound("no recording of this session")
        try:
            return session, await self._recordings.get(session.recording)
        except ObjectNotFound:
            raise NotFound("the recording is missing from the object store") from None

    async def closed(self, session: SshSession, reason: str) -> None:
        session.ended_at = self._clock.now()
        session.end_reason = reason
        await self._log.finish(session.id, session.ended_at, reason, session.channels, session.recording)

