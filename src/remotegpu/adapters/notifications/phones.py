"""Phone numbers and the SMS send log: in memory and in SQL (SQLite, PostgreSQL)."""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from remotegpu.adapters.db import tables as t
from remotegpu.domain.notifications.sms import PhoneNumber

_P, _S = t.user_phones, t.sms_sends


class InMemoryPhoneRepository:
    """Satisfies ``application.notifications.ports.PhoneRepository``."""

    def __init__(self) -> None:
        self.phones: dict[str, PhoneNumber] = {}
        self.sends: dict[int, tuple[str, str, datetime]] = {}
        self._next = 0

    async def get(self, user_id: str) -> PhoneNumber | None:
        p = self.phones.get(user_id)
        return copy.copy(p) if p else None

    async def save(self, phone: PhoneNumber) -> None:
        self.phones[phone.user_id] = copy.copy(phone)

    async def delete(self, user_id: str) -> bool:
        return self.phones.pop(user_id, None) is not None

    async def sends_since(self, number: str, template: str, since: datetime) -> list[datetime]:
        return sorted(at for n, tp, at in self.sends.values() if n == number and tp == template and at > since)

    async def record_send(self, number: str, template: str, at: datetime) -> int:
        self._next += 1
        self.sends[self._next] = (number, template, at)
        return self._next

    async def cancel_send(self, send_id: int) -> None:
        self.sends.pop(send_id, None)


def _row(p: PhoneNumber) -> dict[str, Any]:
    return dict(number=p.number, verified_at=p.verified_at, pending_number=p.pending_number, code_hash=p.code_hash,
                code_expires_at=p.code_expires_at, code_attempts=p.code_attempts, updated_at=p.updated_at)


class SqlPhoneRepository:
    """Satisfies ``application.notifications.ports.PhoneRepository``; each call one transaction."""

    def __init__(self, session_factory: async_sessionmaker[AsyncSession]):
        self._sessions = session_factory

    async def get(self, user_id: str) -> PhoneNumber | None:
        async with self._sessions() as s:
            r = (await s.execute(sa.select(_P).where(_P.c.user_id == user_id))).first()
        if r is None:
            return None
        return PhoneNumber(user_id=r.user_id, number=r.number, verified_at=r.verified_at, pending_number=r.pending_number,
                           code_hash=r.code_hash, code_expires_at=r.code_expires_at, code_attempts=r.code_attempts,
                           updated_at=r.updated_at)

    async def save(self, phone: PhoneNumber) -> None:
        async with self._sessions() as s, s.begin():
            result = await s.execute(_P.update().where(_P.c.user_id == phone.user_id).values(**_row(phone)))
            if result.rowcount != 1:
                await s.execute(_P.insert().values(user_id=phone.user_id, **_row(phone)))

    async def delete(self, user_id: str) -> bool:
        async with self._sessions() as s, s.begin():
            return (await s.execute(_P.delete().where(_P.c.user_id == user_id))).rowcount == 1

    async def sends_since(self, number: str, template: str, since: datetime) -> list[datetime]:
        async with self._sessions() as s:
            rows = await s.execute(sa.select(_S.c.sent_at).where(_S.c.number == number, _S.c.template == template,
                                                                 _S.c.sent_at > since).order_by(_S.c.sent_at))
            return list(rows.scalars())

    async def record_send(self, number: str, template: str, at: datetime) -> int:
        async with self._sessions() as s, s.begin():
            result = await s.execute(_S.insert().values(number=number, template=template, sent_at=at).returning(_S.c.id))
            return result.scalar_one()

    async def cancel_send(self, send_id: int) -> None:
        async with self._sessions() as s, s.begin():
            await s.execute(_S.delete().where(_S.c.id == send_id))
