"""The SSH gateway's audit record (``SshSessionLog``) in SQL and in memory."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from remotegpu.adapters.db.tables import ssh_sessions as _S
from remotegpu.application.environments.ssh_gateway import SshSession


def _session(r: Any) -> SshSession:
    return SshSession(
        id=r.id, user_id=r.user_id, username=r.username, environment_id=r.environment_id, workspace_id=r.workspace_id,
        environment_name=r.environment_name, kind=r.kind, client_address=r.client_address,
        key_fingerprint=r.key_fingerprint, started_at=r.started_at, ended_at=r.ended_at, end_reason=r.end_reason,
        channels=list(r.channels or []), recording=r.recording,
    )


class SqlSshSessionLog:
    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = session_factory

    async def add(self, session: SshSession) -> None:
        async with self._sessions() as s, s.begin():
            await s.execute(_S.insert().values(
                id=session.id, user_id=session.user_id, username=session.username,
                environment_id=session.environment_id, workspace_id=session.workspace_id,
                environment_name=session.environment_name, kind=session.kind, client_address=session.client_address,
                key_fingerprint=session.key_fingerprint, started_at=session.started_at, ended_at=session.ended_at,
                end_reason=session.end_reason, channels=list(session.channels), recording=session.recording,
            ))

    async def finish(self, session_id: str, ended_at: datetime, end_reason: str, channels: list[str],
                     recording: str | None = None) -> None:
        async with self._sessions() as s, s.begin():
            await s.execute(_S.update().where(_S.c.id == session_id).values(
                ended_at=ended_at, end_reason=end_reason, channels=list(channels), recording=recording))

    async def get(self, session_id: str) -> SshSession | None:
        async with self._sessions() as s:
            r = (await s.execute(sa.select(_S).where(_S.c.id == session_id))).first()
        return _session(r) if r else None

    async def list(self, *, workspace_id: str | None, environment_id: str | None, user_id: str | None,
                   limit: int, offset: int) -> tuple[list[SshSession], int]:
        conds = []
        if workspace_id is not None:
            conds.append(_S.c.workspace_id == workspace_id)
        if environment_id is not None:
            conds.append(_S.c.environment_id == environment_id)
        if user_id is not None:
            conds.append(_S.c.user_id == user_id)
        async with self._sessions() as s:
            total = (await s.execute(sa.select(sa.func.count()).select_from(_S).where(*conds))).scalar_one()
            rows = (await s.execute(
                sa.select(_S).where(*conds).order_by(_S.c.started_at.desc(), _S.c.id.desc()).limit(limit).offset(offset)
            )).all()
        return [_session(r) for r in rows], int(total)


class InMemorySshSessionLog:
    def __init__(self) -> None:
        self._items: dict[str, SshSession] = {}

    async def add(self, session: SshSession) -> None:
        self._items[session.id] = replace(session, channels=list(session.channels))

    async def finish(self, session_id: str, ended_at: datetime, end_reason: str, channels: list[str],
                     recording: str | None = None) -> None:
        if found := self._items.get(session_id):
            self._items[session_id] = replace(found, ended_at=ended_at, end_reason=end_reason, channels=list(channels),
                                              recording=recording)

    async def get(self, session_id: str) -> SshSession | None:
        found = self._items.get(session_id)
        return replace(found, channels=list(found.channels)) if found else None

    async def list(self, *, workspace_id: str | None, environment_id: str | None, user_id: str | None,
                   limit: int, offset: int) -> tuple[list[SshSession], int]:
        found = [s for s in self._items.values()
                 if (workspace_id is None or s.workspace_id == workspace_id)
                 and (environment_id is None or s.environment_id == environment_id)
                 and (user_id is None or s.user_id == user_id)]
        found.sort(key=lambda s: (s.started_at, s.id), reverse=True)
        return [replace(s, channels=list(s.channels)) for s in found[offset:offset + limit]], len(found)
