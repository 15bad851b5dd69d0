"""Ports of the support context."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Awaitable, Callable, Protocol

from remotegpu.domain.notifications.models import Message
from remotegpu.domain.support.models import Attachment, Comment, Priority, Ticket, TicketStatus


class TicketRepository(Protocol):
    """Tickets, their comments and the support team. Each call is its own short transaction.

    ``save`` is optimistic: it writes only when the stored version is the ticket's
    (then bumps it), so two agents acting at once cannot overwrite each other.
    """

    async def add(self, ticket: Ticket) -> None: ...

    async def get(self, ticket_id: str) -> Ticket | None: ...

    async def save(self, ticket: Ticket, comments: list[Comment] | None = None) -> bool:
        """Write the ticket (and add ``comments``) if nobody saved it since it was read; False otherwise."""
        ...

    async def comments(self, ticket_id: str, *, include_internal: bool) -> list[Comment]:
        """Oldest first."""
        ...

    async def list(self, *, requester_id: str | None = None, statuses: list[TicketStatus] | None = None,
                   assignee_id: str | None = None, unassigned: bool = False, priority: Priority | None = None,
                   limit: int = 50, offset: int = 0) -> tuple[list[Ticket], int]:
        """Newest first (by last update), and the total."""
        ...

    async def add_attachment(self, attachment: Attachment) -> None: ...

    async def attachments(self, ticket_id: str, *, include_internal: bool) -> list[Attachment]:
        """Oldest first (internal ones: those on internal notes)."""
        ...

    async def attachment(self, ticket_id: str, attachment_id: str) -> Attachment | None: ...

    async def closed_before(self, when: datetime, limit: int) -> list[Ticket]:
        """Closed tickets closed before ``when``, oldest first (retention)."""
        ...

    async def delete(self, ticket_id: str) -> None:
        """The ticket, its comments and its attachments' rows."""
        ...

    async def in_statuses(self, statuses: list[TicketStatus], limit: int, after: str | None = None) -> list[Ticket]:
        """Tickets the automations look at: a page ordered by id, those after ``after``."""
        ...

    async def agents(self) -> list[str]:
        """User ids of the support team (besides platform admins)."""
        ...

    async def is_agent(self, user_id: str) -> bool: ...

    async def add_agent(self, user_id: str, added_by: str, at: datetime) -> None: ...

    async def remove_agent(self, user_id: str) -> bool: ...


class Notifier(Protocol):
    """The notifications context's dispatcher: stores and sends messages (in-app, email)."""

    async def dispatch(self, messages: list[Message]) -> list[Any]: ...


#: Webhook publisher: (workspace_id, event_type, data) → deliveries queued.
Publish = Callable[[str, str, dict[str, Any]], Awaitable[int]]
