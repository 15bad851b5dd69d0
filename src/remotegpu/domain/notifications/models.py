"""A notification: one message for one recipient, rendered in that recipient's language.

A domain event becomes a ``Message`` (what happened, to which ``Audience``); the
dispatcher (application/notifications/dispatch.py) resolves the audience to users,
renders the message per user's locale and records one ``Notification`` each, with
one ``Delivery`` per channel the user's preferences allow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

from remotegpu.domain.workspaces.models import Role


class Category(str, Enum):
    ENVIRONMENT = "environment"
    BILLING = "billing"
    ALERT = "alert"
    SECURITY = "security"
    SUPPORT = "support"
    SYSTEM = "system"


class Severity(str, Enum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class Channel(str, Enum):
    IN_APP = "in_app"
    EMAIL = "email"
    SMS = "sms"  # opt-in per category, to a verified phone number (critical ones always)


@dataclass(frozen=True)
class Audience:
    """Who should hear of it: named users, members of a workspace (all, or by role), platform admins."""

    user_ids: tuple[str, ...] = ()
    workspace_id: str | None = None
    roles: tuple[Role, ...] = ()  # with workspace_id: () = every member
    admins: bool = False


@dataclass(frozen=True)
class Message:
    """A domain event, worded as something to tell people.

    ``source_key`` names the event (its id): together with the recipient it makes the
    notification's dedupe key, so dispatching the same event twice tells nobody twice.
    """

    kind: str  # a template name (templates.py)
    category: Category
    severity: Severity
    audience: Audience
    source_key: str
    params: dict[str, Any] = field(default_factory=dict)
    link: str | None = None  # a console path, e.g. /environments/<id>


@dataclass
class Notification:
    id: str
    user_id: str
    kind: str
    category: Category
    severity: Severity
    title: str
    body: str
    created_at: datetime
    dedupe_key: str
    link: str | None = None
    in_inbox: bool = True  # False: the user turned in-app off for this category (email only)
    read_at: datetime | None = None


class DeliveryStatus(str, Enum):
    """pending → sending → sent | failed; sending → pending on a transient failure.

    ``sending`` is written (committed) before the message leaves: a worker that dies
    after that point leaves the delivery ``sending``, and no retry sends it again —
    a stale one becomes ``unknown`` (it may or may not have arrived; we never send twice).
    """

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    UNKNOWN = "unknown"
    #: Waiting for the user's digest (low-severity email batched per period; ``not_before`` = when).
    DIGEST = "digest"


@dataclass
class Delivery:
    id: str
    notification_id: str
    user_id: str
    channel: Channel
    idempotency_key: str  # notification id × channel: also the email's Message-ID
    status: DeliveryStatus
    created_at: datetime
    updated_at: datetime
    not_before: datetime | None = None  # quiet hours: not sent before this
    attempts: int = 0
    last_error: str = ""
    sent_at: datetime | None = None
