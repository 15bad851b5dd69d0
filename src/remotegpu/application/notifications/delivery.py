"""Sending an email delivery: a durable job, retried with backoff, never sent twice.

Choice: record-before-send. Each attempt first moves the delivery pending → sending
in its own committed transaction (``claim_delivery``, atomic: of two workers only one
wins), then talks to SMTP, then records the outcome. A worker that crashes after
the claim leaves the delivery ``sending``; a retry of the job finds nothing to claim
and sends nothing. The price is at-most-once: a crash between claim and hand-over
can lose that email — ``expire_stale`` then marks it ``unknown`` so the record says
so honestly. We prefer that to a duplicate (the issue's requirement), and the
window is one SMTP conversation long. The Message-ID is the idempotency key, so a
mail system that sees a resend anyway can tell.

Transient failures (connection refused, timeout, 4xx) put the delivery back to
pending and the job tries again after a backoff; permanent ones (5xx) fail it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from remotegpu.application.notifications.dispatch import DELIVER_TASK
from remotegpu.application.notifications.phones import SmsLimited
from remotegpu.application.notifications.ports import (
    EmailMessage,
    EmailSender,
    NotificationRepository,
    PermanentEmailError,
    PermanentSmsError,
    TransientEmailError,
    TransientSmsError,
)
from remotegpu.application.shared.ports import Clock, TaskQueue, UnitOfWorkFactory
from remotegpu.domain.notifications.models import Channel, DeliveryStatus
from remotegpu.domain.notifications.preferences import NotificationPreferences
from remotegpu.domain.notifications.sms import TEMPLATE_NOTIFY
from remotegpu.domain.notifications.digest import digest_email
from remotegpu.domain.notifications.templates import email_parts

log = logging.getLogger(__name__)

#: Seconds to wait after the 1st, 2nd, ... transient failure; one attempt more than entries.
DEFAULT_BACKOFF = (5.0, 30.0, 120.0, 600.0)
#: A delivery ``sending`` for longer than this had its worker die mid-send.
STALE_SENDING = timedelta(minutes=15)


@dataclass
class DeliveryService:
    uow: UnitOfWorkFactory
    repo: NotificationRepository
    clock: Clock
    sender: EmailSender | None  # None: email is off (no SMTP configured)
    queue: TaskQueue
    public_url: str | None = None
    backoff: tuple[float, ...] = field(default=DEFAULT_BACKOFF)
    phones: Any = None  # PhoneService: the SMS channel (None: off)

    async def deliver(self, delivery_id: str) -> DeliveryStatus | None:
        """Send one delivery, retrying transient failures; return its final status
        (None when there was nothing to send: already sent, in flight, or not due)."""
        for attempt in range(len(self.backoff) + 1):
            claimed = await self.repo.claim_delivery(delivery_id, self.clock.now())
            if claimed is None:
                return None
            status, error = await self._attempt(claimed)
            if status is DeliveryStatus.PENDING and attempt == len(self.backoff):
                status, error = DeliveryStatus.FAILED, f"gave up after {attempt + 1} attempts: {error}"
            await self.repo.finish_delivery(delivery_id, status, self.clock.now(), error)
            if status is not DeliveryStatus.PENDING:
                return status
            log.info("email delivery failed, retrying", extra={"delivery": delivery_id, "attempt": attempt + 1})
            await asyncio.sleep(self.backoff[attempt])
        return DeliveryStatus.FAILED  # not reached

    async def _attempt(self, delivery) -> tuple[DeliveryStatus, str]:
        if delivery.channel is Channel.SMS:
            return await self._attempt_sms(delivery)
        if delivery.channel is not Channel.EMAIL or self.sender is None:
            return DeliveryStatus.FAILED, "email is not configured on this platform"
        notification = await self.repo.get(delivery.notification_id)
        async with self.uow() as uow:
            user = await uow.users.get(delivery.user_id)
        if notification is None or user is None or not user.is_active or not user.email:
            return DeliveryStatus.FAILED, "the recipient no longer exists or has no email address"
        prefs = await self.repo.get_preferences(user.id) or NotificationPreferences(user.id)
        link = f"{self.public_url.rstrip('/')}{notification.link}" if self.public_url and notification.link else None
        text, html = email_parts(notification.title, notification.body, prefs.locale, link)
        message = EmailMessage(user.email, notification.title, text, html, delivery.idempotency_key)
        try:
            await self.sender.send(message)
        except TransientEmailError as exc:
            return DeliveryStatus.PENDING, str(exc)[:500]
        except PermanentEmailError as exc:
            return DeliveryStatus.FAILED, str(exc)[:500]
        return DeliveryStatus.SENT, ""

    async def _attempt_sms(self, delivery) -> tuple[DeliveryStatus, str]:
        """The notification's title to the user's verified number (the provider's template
        carries the platform's name); never beyond the per-number limits: a message over
        them is not sent (failed, said so) — the inbox and email still carry it."""
        if self.phones is None or not self.phones.enabled:
            return DeliveryStatus.FAILED, "SMS is not configured on this platform"
        notification = await self.repo.get(delivery.notification_id)
        number = await self.phones.verified_number(delivery.user_id)
        if notification is None or number is None:
            return DeliveryStatus.FAILED, "the recipient has no verified phone number any more"
        try:
            await self.phones.send_limited(number, TEMPLATE_NOTIFY, {"title": notification.title[:35]}, delivery.idempotency_key)
        except SmsLimited as exc:
            return DeliveryStatus.FAILED, str(exc)
        except TransientSmsError as exc:
            return DeliveryStatus.PENDING, str(exc)[:500]
        except PermanentSmsError as exc:
            return DeliveryStatus.FAILED, str(exc)[:500]
        return DeliveryStatus.SENT, ""

    async def send_due(self, limit: int = 200) -> int:
        """Periodic: enqueue pending deliveries whose quiet hours ended (or whose job was lost);
        mark the ones a dead worker left ``sending`` as ``unknown``."""
        now = self.clock.now()
        expired = await self.repo.expire_sending(now - STALE_SENDING, now)
        if expired:
            log.warning("%d email deliveries were left mid-send by a worker; outcome unknown, not resent", expired)
        due = await self.repo.due_deliveries(now, limit)
        for d in due:
            await self.queue.enqueue(DELIVER_TASK, delivery_id=d.id)
        await self.send_digests()
        return len(due)

    async def send_digests(self, limit: int = 200) -> int:
        """One email per user whose digest is due, holding every notification waiting for it.
        Record-before-send like single emails: claimed (sending), sent, then marked; a
        transient failure puts them back for the next round, a permanent one fails them."""
        if self.sender is None:
            return 0
        sent = 0
        for user_id in await self.repo.due_digest_users(self.clock.now(), limit):
            claimed = await self.repo.claim_digest(user_id, self.clock.now())
            if not claimed:
                continue  # another worker took it
            status, error = await self._send_digest(user_id, claimed)
            for d in claimed:
                await self.repo.finish_delivery(d.id, status, self.clock.now(), error)
            sent += status is DeliveryStatus.SENT
        return sent

    async def _send_digest(self, user_id: str, claimed: list) -> tuple[DeliveryStatus, str]:
        async with self.uow() as uow:
            user = await uow.users.get(user_id)
        if user is None or not user.is_active or not user.email:
            return DeliveryStatus.FAILED, "the recipient no longer exists or has no email address"
        notifications = [n for d in claimed if (n := await self.repo.get(d.notification_id)) is not None]
        if not notifications:
            return DeliveryStatus.FAILED, "the notifications are gone"
        prefs = await self.repo.get_preferences(user_id) or NotificationPreferences(user_id)
        subject, text, html = digest_email(notifications, prefs.locale, self.public_url)
        key = f"digest.{user_id}.{claimed[0].id}"
        try:
            await self.sender.send(EmailMessage(user.email, subject, text, html, key))
        except TransientEmailError as exc:
            return DeliveryStatus.DIGEST, str(exc)[:500]
        except PermanentEmailError as exc:
            return DeliveryStatus.FAILED, str(exc)[:500]
        return DeliveryStatus.SENT, ""
