"""Tickets in memory (tests, ``persistence=memory``); hands out copies, like a database."""

from __future__ import annotations

import copy
from datetime import datetime

from remotegpu.domain.support.models import Attachment, Comment, Priority, Ticket, TicketStatus


class InMemoryTicketRepository:
    """Satisfies ``application.support.ports.TicketRepository``."""

    def __init__(self) -> None:
        self.tickets: dict[str, Ticket] = {}
        self.comment_rows: list[Comment] = []
        self.agent_ids: dict[str, datetime] = {}
        self.attachment_rows: dict[str, Attachment] = {}

    async def add(self, ticket: Ticket) -> None:
        ticket.version = 1
        self.tickets[ticket.id] = copy.deepcopy(ticket)

    async def get(self, ticket_id: str) -> Ticket | None:
        t = self.tickets.get(ticket_id)
        return copy.deepcopy(t) if t else None

    async def save(self, ticket: Ticket, comments: list[Comment] | None = None) -> bool:
        stored = self.tickets.get(ticket.id)
        if stored is None or stored.version != ticket.version:
            return False
        ticket.version += 1
        self.tickets[ticket.id] = copy.deepcopy(ticket)
        self.comment_rows.extend(copy.deepcopy(c) for c in comments or [])
        return True

    async def comments(self, ticket_id: str, *, include_internal: bool) -> list[Comment]:
        found = [c for c in self.comment_rows if c.ticket_id == ticket_id and (include_internal or c.public)]
        return [copy.deepcopy(c) for c in sorted(found, key=lambda c: (c.created_at, c.id))]

    async def list(self, *, requester_id: str | None = None, statuses: list[TicketStatus] | None = None,
                   assignee_id: str | None = None, unassigned: bool = False, priority: Priority | None = None,
                   limit: int = 50, offset: int = 0) -> tuple[list[Ticket], int]:
        found = [
            t for t in self.tickets.values()
            if (requester_id is None or t.requester_id == requester_id)
            and (not statuses or t.status in statuses)
            and (assignee_id is None or t.assignee_id == assignee_id)
            and (not unassigned or t.assignee_id is None)
            and (priority is None or t.priority is priority)
        ]
        found.sort(key=lambda t: (t.updated_at, t.id), reverse=True)
        return [copy.deepcopy(t) for t in found[offset:offset + limit]], len(found)

    async def in_statuses(self, statuses: list[TicketStatus], limit: int, after: str | None = None) -> list[Ticket]:
        found = sorted((t for t in self.tickets.values() if t.status in statuses and (after is None or t.id > after)),
                       key=lambda t: t.id)
        return [copy.deepcopy(t) for t in found[:limit]]

    async def agents(self) -> list[str]:
        return sorted(self.agent_ids, key=lambda i: (self.agent_ids[i], i))

    async def is_agent(self, user_id: str) -> bool:
        return user_id in self.agent_ids

    async def add_agent(self, user_id: str, added_by: str, at: datetime) -> None:
        self.agent_ids.setdefault(user_id, at)

    async def remove_agent(self, user_id: str) -> bool:
        return self.agent_ids.pop(user_id, None) is not None

    async def add_attachment(self, a: Attachment) -> None:
        self.attachment_rows[a.id] = a

    async def attachments(self, ticket_id: str, *, include_internal: bool) -> list[Attachment]:
        found = [a for a in self.attachment_rows.values() if a.ticket_id == ticket_id and (include_internal or a.public)]
        return sorted(found, key=lambda a: (a.created_at, a.id))

    async def attachment(self, ticket_id: str, attachment_id: str) -> Attachment | None:
        a = self.attachment_rows.get(attachment_id)
        return a if a is not None and a.ticket_id == ticket_id else None

    async def closed_before(self, when: datetime, limit: int) -> list[Ticket]:
        found = [t for t in self.tickets.values() if t.status is TicketStatus.CLOSED and t.closed_at and t.closed_at < when]
        return [copy.deepcopy(t) for t in sorted(found, key=lambda t: (t.closed_at, t.id))[:limit]]

    async def delete(self, ticket_id: str) -> None:
        self.tickets.pop(ticket_id, None)
        self.comment_rows = [c for c in self.comment_rows if c.ticket_id != ticket_id]
        self.attachment_rows = {k: a for k, a in self.attachment_rows.items() if a.ticket_id != ticket_id}
