"""Tickets in SQL (SQLite or PostgreSQL): each call one short transaction, saves versioned."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from remotegpu.adapters.db import tables as t
from remotegpu.domain.support.models import Attachment, Comment, Priority, Ticket, TicketCategory, TicketStatus

_T, _C, _A, _F = t.support_tickets, t.support_comments, t.support_agents, t.support_attachments


def _row(x: Ticket) -> dict[str, Any]:
    return dict(
        id=x.id, requester_id=x.requester_id, subject=x.subject, description=x.description, category=x.category.value,
        priority=x.priority.value, status=x.status.value, workspace_id=x.workspace_id, environment_id=x.environment_id,
        assignee_id=x.assignee_id, created_at=x.created_at, updated_at=x.updated_at, first_response_at=x.first_response_at,
        solved_at=x.solved_at, closed_at=x.closed_at, pending_since=x.pending_since, reminded_at=x.reminded_at,
        sla_elapsed=x.sla_elapsed, sla_running_since=x.sla_running_since, sla_alerts=json.dumps(sorted(x.sla_alerts)),
        version=x.version,
    )


def _ticket(r: Any) -> Ticket:
    return Ticket(
        id=r.id, requester_id=r.requester_id, subject=r.subject, description=r.description,
        category=TicketCategory(r.category), priority=Priority(r.priority), created_at=r.created_at, updated_at=r.updated_at,
        status=TicketStatus(r.status), workspace_id=r.workspace_id, environment_id=r.environment_id,
        assignee_id=r.assignee_id, first_response_at=r.first_response_at, solved_at=r.solved_at, closed_at=r.closed_at,
        pending_since=r.pending_since, reminded_at=r.reminded_at, sla_elapsed=r.sla_elapsed,
        sla_running_since=r.sla_running_since, sla_alerts=set(json.loads(r.sla_alerts)), version=r.version,
    )


def _comment_row(c: Comment) -> dict[str, Any]:
    return dict(id=c.id, ticket_id=c.ticket_id, author_id=c.author_id, body=c.body, public=c.public,
                by_staff=c.by_staff, created_at=c.created_at)


def _comment(r: Any) -> Comment:
    return Comment(r.id, r.ticket_id, r.author_id, r.body, r.public, r.by_staff, r.created_at)


class SqlTicketRepository:
    """Satisfies ``application.support.ports.TicketRepository``."""

    def __init__(self, session_factory: async_sessionmaker[AsyncSession]):
        self._sessions = session_factory

    async def add(self, ticket: Ticket) -> None:
        ticket.version = 1
        async with self._sessions() as s, s.begin():
            await s.execute(_T.insert().values(**_row(ticket)))

    async def get(self, ticket_id: str) -> Ticket | None:
        async with self._sessions() as s:
            r = (await s.execute(sa.select(_T).where(_T.c.id == ticket_id))).first()
        return _ticket(r) if r else None

    async def save(self, ticket: Ticket, comments: list[Comment] | None = None) -> bool:
        values = _row(ticket)
        values.pop("id")
        values["version"] = ticket.version + 1
        async with self._sessions() as s, s.begin():
            result = await s.execute(_T.update().where(_T.c.id == ticket.id, _T.c.version == ticket.version).values(**values))
            if result.rowcount != 1:
                return False
            if comments:
                await s.execute(_C.insert(), [_comment_row(c) for c in comments])
        ticket.version += 1
        return True

    async def comments(self, ticket_id: str, *, include_internal: bool) -> list[Comment]:
        q = sa.select(_C).where(_C.c.ticket_id == ticket_id)
        if not include_internal:
            q = q.where(_C.c.public.is_(True))
        async with self._sessions() as s:
            rows = (await s.execute(q.order_by(_C.c.created_at, _C.c.id))).all()
        return [_comment(r) for r in rows]

    async def list(self, *, requester_id: str | None = None, statuses: list[TicketStatus] | None = None,
                   assignee_id: str | None = None, unassigned: bool = False, priority: Priority | None = None,
                   limit: int = 50, offset: int = 0) -> tuple[list[Ticket], int]:
        where = []
        if requester_id is not None:
            where.append(_T.c.requester_id == requester_id)
        if statuses:
            where.append(_T.c.status.in_([x.value for x in statuses]))
        if assignee_id is not None:
            where.append(_T.c.assignee_id == assignee_id)
        if unassigned:
            where.append(_T.c.assignee_id.is_(None))
        if priority is not None:
            where.append(_T.c.priority == priority.value)
        async with self._sessions() as s:
            total = (await s.execute(sa.select(sa.func.count()).select_from(_T).where(*where))).scalar_one()
            rows = (await s.execute(sa.select(_T).where(*where).order_by(_T.c.updated_at.desc(), _T.c.id.desc())
                                    .limit(limit).offset(offset))).all()
        return [_ticket(r) for r in rows], total

    async def in_statuses(self, statuses: list[TicketStatus], limit: int, after: str | None = None) -> list[Ticket]:
        where = [_T.c.status.in_([x.value for x in statuses])]
        if after is not None:
            where.append(_T.c.id > after)
        async with self._sessions() as s:
            rows = (await s.execute(sa.select(_T).where(*where).order_by(_T.c.id).limit(limit))).all()
        return [_ticket(r) for r in rows]

    # --- attachments (their bytes are in the object store) ---------------------------------
    async def add_attachment(self, a: Attachment) -> None:
        async with self._sessions() as s, s.begin():
            await s.execute(_F.insert().values(**a.__dict__))

    async def attachments(self, ticket_id: str, *, include_internal: bool) -> list[Attachment]:
        q = sa.select(_F).where(_F.c.ticket_id == ticket_id)
        if not include_internal:
            q = q.where(_F.c.public.is_(True))
        async with self._sessions() as s:
            rows = (await s.execute(q.order_by(_F.c.created_at, _F.c.id))).all()
        return [Attachment(**r._mapping) for r in rows]

    async def attachment(self, ticket_id: str, attachment_id: str) -> Attachment | None:
        async with self._sessions() as s:
            r = (await s.execute(sa.select(_F).where(_F.c.ticket_id == ticket_id, _F.c.id == attachment_id))).first()
        return Attachment(**r._mapping) if r else None

    async def closed_before(self, when: datetime, limit: int) -> list[Ticket]:
        async with self._sessions() as s:
            rows = (await s.execute(sa.select(_T).where(_T.c.status == TicketStatus.CLOSED.value, _T.c.closed_at < when)
                                    .order_by(_T.c.closed_at, _T.c.id).limit(limit))).all()
        return [_ticket(r) for r in rows]

    async def delete(self, ticket_id: str) -> None:
        """The ticket with its comments and attachment rows (the caller removes the bytes first)."""
        async with self._sessions() as s, s.begin():
            for table in (_F, _C):
                await s.execute(table.delete().where(table.c.ticket_id == ticket_id))
            await s.execute(_T.delete().where(_T.c.id == ticket_id))

    async def agents(self) -> list[str]:
        async with self._sessions() as s:
            return list((await s.execute(sa.select(_A.c.user_id).order_by(_A.c.added_at, _A.c.user_id))).scalars())

    async def is_agent(self, user_id: str) -> bool:
        async with self._sessions() as s:
            return (await s.execute(sa.select(_A.c.user_id).where(_A.c.user_id == user_id))).first() is not None

    async def add_agent(self, user_id: str, added_by: str, at: datetime) -> None:
        try:
            async with self._sessions() as s, s.begin():
                await s.execute(_A.insert().values(user_id=user_id, added_by=added_by, added_at=at))
        except IntegrityError:
            pass  # already on the team

    async def remove_agent(self, user_id: str) -> bool:
        async with self._sessions() as s, s.begin():
            result = await s.execute(_A.delete().where(_A.c.user_id == user_id))
        return result.rowcount == 1
