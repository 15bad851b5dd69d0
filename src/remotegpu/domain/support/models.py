"""A support ticket and its conversation; the workflow's rules.

Statuses: new → open → pending (waiting on the requester) → solved → closed, and
on-hold (waiting on something internal). ``closed`` is final: a requester who writes
again opens a new ticket. The SLA clock (sla.py) runs while the ticket waits on the
support team (new, open, on-hold) and is paused while it waits on the requester
(pending) or is solved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from remotegpu.domain.shared.errors import Conflict, InvalidInput


class TicketStatus(str, Enum):
    NEW = "new"
    OPEN = "open"
    PENDING = "pending"
    ON_HOLD = "on_hold"
    SOLVED = "solved"
    CLOSED = "closed"


class Priority(str, Enum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class TicketCategory(str, Enum):
    ENVIRONMENT = "environment"
    BILLING = "billing"
    ACCOUNT = "account"
    BUG = "bug"
    QUESTION = "question"
    OTHER = "other"


#: The support team owes the next move: the SLA clock runs.
CLOCK_RUNS = frozenset({TicketStatus.NEW, TicketStatus.OPEN, TicketStatus.ON_HOLD})
ACTIVE = frozenset({TicketStatus.NEW, TicketStatus.OPEN, TicketStatus.PENDING, TicketStatus.ON_HOLD})

#: Status changes a support agent may make (the requester's are reply / solve / reopen).
_AGENT_MOVES: dict[TicketStatus, frozenset[TicketStatus]] = {
    TicketStatus.NEW: frozenset({TicketStatus.OPEN, TicketStatus.PENDING, TicketStatus.ON_HOLD, TicketStatus.SOLVED}),
    TicketStatus.OPEN: frozenset({TicketStatus.PENDING, TicketStatus.ON_HOLD, TicketStatus.SOLVED}),
    TicketStatus.PENDING: frozenset({TicketStatus.OPEN, TicketStatus.ON_HOLD, TicketStatus.SOLVED}),
    TicketStatus.ON_HOLD: frozenset({TicketStatus.OPEN, TicketStatus.PENDING, TicketStatus.SOLVED}),
    TicketStatus.SOLVED: frozenset({TicketStatus.OPEN, TicketStatus.CLOSED}),
    TicketStatus.CLOSED: frozenset(),
}

MAX_SUBJECT = 200
MAX_TEXT = 20_000


def check_text(value: str, field_name: str, limit: int) -> str:
    text = value.strip()
    if not text:
        raise InvalidInput(f"{field_name} must not be empty", details={"field": field_name})
    if len(text) > limit:
        raise InvalidInput(f"{field_name}: at most {limit} characters", details={"field": field_name})
    return text


@dataclass
class Ticket:
    id: str
    requester_id: str
    subject: str
    description: str
    category: TicketCategory
    priority: Priority
    created_at: datetime
    updated_at: datetime
    status: TicketStatus = TicketStatus.NEW
    workspace_id: str | None = None
    environment_id: str | None = None
    assignee_id: str | None = None
    first_response_at: datetime | None = None
    solved_at: datetime | None = None
    closed_at: datetime | None = None
    pending_since: datetime | None = None
    reminded_at: datetime | None = None
    #: Business seconds the SLA clock ran before ``sla_running_since`` (see sla.py).
    sla_elapsed: float = 0.0
    sla_running_since: datetime | None = None
    #: Alerts already raised: "first_response.warning", "resolution.breach", ...
    sla_alerts: set[str] = field(default_factory=set)
    version: int = 0

    def moves_for_agent(self) -> frozenset[TicketStatus]:
        return _AGENT_MOVES[self.status]

    def move(self, to: TicketStatus, now: datetime, elapsed_until_now: float) -> bool:
        """Change status (the caller checked who may); keeps the SLA clock and the timers right.

        ``elapsed_until_now``: the SLA clock's business seconds up to ``now``
        (sla.elapsed), banked when the clock stops. False when nothing changed.
        """
        if to is self.status:
            return False
        if self.status is TicketStatus.CLOSED:
            raise Conflict("this ticket is closed; open a new one", code="ticket_closed")
        was_running = self.status in CLOCK_RUNS
        self.status = to
        if was_running and to not in CLOCK_RUNS:
            self.sla_elapsed, self.sla_running_since = elapsed_until_now, None
        elif not was_running and to in CLOCK_RUNS:
            self.sla_running_since = now
        self.pending_since = now if to is TicketStatus.PENDING else None
        self.reminded_at = None if to is not TicketStatus.PENDING else self.reminded_at
        if to is TicketStatus.SOLVED:
            self.solved_at = now
        elif to is not TicketStatus.CLOSED:
            self.solved_at = None
        if to is TicketStatus.CLOSED:
            self.closed_at = now
        self.updated_at = now
        return True

    def agent_move(self, to: TicketStatus, now: datetime, elapsed_until_now: float) -> bool:
        if to is self.status:
            return False
        if to not in self.moves_for_agent():
            raise Conflict(f"a ticket cannot go from {self.status.value} to {to.value}", code="invalid_transition",
                           details={"from": self.status.value, "to": to.value,
                                    "allowed": sorted(s.value for s in self.moves_for_agent())})
        return self.move(to, now, elapsed_until_now)


@dataclass
class Comment:
    """A public reply (seen by the requester) or an internal note (support staff only)."""

    id: str
    ticket_id: str
    author_id: str
    body: str
    public: bool
    by_staff: bool
    created_at: datetime


#: Attachments: at most this many bytes each, this many per ticket, of these types (what
#: people send support: screenshots, logs, configs, archives of them, PDFs).
MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024
MAX_ATTACHMENTS = 20
ATTACHMENT_TYPES = frozenset({
    "image/png", "image/jpeg", "image/gif", "image/webp", "text/plain", "text/csv", "text/markdown", "application/json",
    "application/pdf", "application/zip", "application/gzip", "application/x-tar", "application/x-yaml", "application/yaml",
})


@dataclass(frozen=True)
class Attachment:
    """A file on a ticket (``comment_id`` None: given with the ticket itself)."""

    id: str
    ticket_id: str
    comment_id: str | None
    uploader_id: str
    filename: str
    content_type: str
    size: int
    sha256: str
    public: bool  # False: on an internal note, support staff only
    created_at: datetime

    @property
    def key(self) -> str:
        """Where its bytes are in the object store."""
        return attachment_key(self.ticket_id, self.id)


def attachment_key(ticket_id: str, attachment_id: str) -> str:
    return f"support/tickets/{ticket_id}/{attachment_id}"


def check_filename(name: str) -> str:
    """A file's name as shown and downloaded: its last path part, no control characters, ≤ 255."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    base = "".join(ch for ch in base if ch.isprintable() and ch not in '"')
    if not base or base in (".", ".."):
        raise InvalidInput("a file name is required", details={"field": "filename"})
    return base[:255]
