"""Ports of the notifications context."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from remotegpu.domain.notifications.models import Delivery, DeliveryStatus, Notification
from remotegpu.domain.notifications.preferences import NotificationPreferences


class NotificationRepository(Protocol):
    """Notifications, their deliveries and users' preferences.

    Every method is its own short transaction: notifications are written after the
    event that caused them was committed (see dispatch.py), and delivery state must be
    durable before and after each send, whatever happens to the sender's process.
    """

    async def add(self, notifications: list[Notification], deliveries: list[Delivery]) -> list[Notification]:
        """Store them, skipping any whose ``dedupe_key`` exists (with its deliveries); return those stored."""
        ...

    async def get(self, notification_id: str) -> Notification | None: ...

    async def list_for_user(self, user_id: str, *, unread_only: bool, limit: int, offset: int) -> tuple[list[Notification], int]:
        """The user's inbox, newest first."""
        ...

    async def unread_count(self, user_id: str) -> int: ...

    async def mark_read(self, user_id: str, notification_id: str, at: datetime) -> bool:
        """False when the user has no such notification in the inbox."""
        ...

    async def mark_all_read(self, user_id: str, at: datetime) -> int: ...

    async def get_delivery(self, delivery_id: str) -> Delivery | None: ...

    async def list_deliveries(self, notification_id: str) -> list[Delivery]: ...

    async def claim_delivery(self, delivery_id: str, at: datetime) -> Delivery | None:
        """Atomically pending (and due) → sending, attempts + 1; None when it is not pending or not due."""
        ...

    async def finish_delivery(self, delivery_id: str, status: DeliveryStatus, at: datetime, error: str = "") -> None:
        """Record the outcome of a claimed delivery (sent, failed, or pending again)."""
        ...

    async def due_deliveries(self, now: datetime, limit: int) -> list[Delivery]:
        """Pending deliveries whose time has come (quiet hours over, or a lost job)."""
        ...

    async def expire_sending(self, before: datetime, at: datetime) -> int:
        """Deliveries left ``sending`` since before ``before`` (their worker died): → unknown."""
        ...

    async def due_digest_users(self, now: datetime, limit: int) -> list[str]:
        """Users with a digest delivery whose time has come."""
        ...

    async def claim_digest(self, user_id: str, at: datetime) -> list[Delivery]:
        """Atomically every digest delivery of the user → sending (attempts + 1); returns them
        (none when another worker claimed them first)."""
        ...

    async def get_preferences(self, user_id: str) -> NotificationPreferences | None: ...

    async def save_preferences(self, preferences: NotificationPreferences) -> None: ...


@dataclass(frozen=True)
class EmailMessage:
    to: str
    subject: str
    text: str
    html: str
    #: Stable per notification × channel: the Message-ID, so a mail system can tell repeats apart.
    idempotency_key: str


class TransientEmailError(Exception):
    """Not sent, may work later (connection refused, timeout, 4xx reply)."""


class PermanentEmailError(Exception):
    """Not sent and never will be as it is (5xx reply: bad address, refused)."""


class EmailSender(Protocol):
    async def send(self, message: EmailMessage) -> None:
        """Hand the message to the mail system; raise Transient/PermanentEmailError when it was not."""
        ...


class UnreadSignals(Protocol):
    """Tells a user's open event streams that their unread count changed."""

    def notify(self, user_id: str) -> None: ...

    def subscribe(self, user_id: str) -> "UnreadSubscription": ...


class UnreadSubscription(Protocol):
    async def wait(self) -> None:
        """Return once the user's unread count may have changed."""
        ...

    def close(self) -> None: ...


# --- SMS ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmsMessage:
    to: str  # E.164
    template: str  # TEMPLATE_VERIFY | TEMPLATE_NOTIFY (domain/notifications/sms.py); the adapter maps it
    params: dict[str, str]
    #: Stable per notification × channel (or per code sent): the provider's OutId.
    idempotency_key: str


class TransientSmsError(Exception):
    """Not sent, may work later (timeout, 5xx, the provider's flow control)."""


class PermanentSmsError(Exception):
    """Not sent and never will be as it is (bad number, template or signature refused)."""


class SmsSender(Protocol):
    async def send(self, message: SmsMessage) -> None:
        """Hand it to the provider; raise Transient/PermanentSmsError when it was not accepted."""
        ...


class PhoneRepository(Protocol):
    """Users' phone numbers and the SMS send log (for the per-number limits). Short transactions."""

    async def get(self, user_id: str) -> "PhoneNumber | None": ...

    async def save(self, phone: "PhoneNumber") -> None: ...

    async def delete(self, user_id: str) -> bool: ...

    async def sends_since(self, number: str, template: str, since: datetime) -> list[datetime]: ...

    async def record_send(self, number: str, template: str, at: datetime) -> int:
        """Log one send (committed at once); returns its id."""
        ...

    async def cancel_send(self, send_id: int) -> None:
        """Forget a logged send that was not made after all."""
        ...


from remotegpu.domain.notifications.sms import PhoneNumber  # noqa: E402 - for the annotations above
