"""The one place where domain events become notifications.

``NotifyingUnitOfWork`` wraps the unit of work every use case gets (like the change
feed's wrapper): it notes the environment events and audit events a use case records
— the environment's event log and the audit log are where those facts are written
anyway — and, once the use case has committed, hands them to the ``Dispatcher``.
Nothing in the use cases has to remember to notify, and a rolled-back change tells
nobody.

The ``Dispatcher`` turns each event into a ``Message`` (domain/notifications/rules.py),
resolves its audience to active users, renders it in each user's language, and
stores one notification per user with one delivery per channel their preferences
allow. Email deliveries are then handed to the task queue (delivery.py sends them).

Notifications are written after the event's commit, in their own transaction: a
process that dies in between loses those notifications (logged, never duplicated:
the dedupe key is event × user). A transactional outbox would close that gap; the
event itself is never lost, it is in the event or audit log.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from remotegpu.application.notifications.ports import NotificationRepository, UnreadSignals
from remotegpu.application.shared.environment_tap import TappedEnvironments
from remotegpu.application.shared.ports import Clock, TaskQueue, UnitOfWork, UnitOfWorkFactory
from remotegpu.domain.environments.models import Environment
from remotegpu.domain.identity.models import AuditEvent
from remotegpu.domain.notifications import rules
from remotegpu.domain.notifications.models import Channel, Delivery, DeliveryStatus, Message, Notification
from remotegpu.domain.notifications.preferences import NotificationPreferences
from remotegpu.domain.notifications.templates import render
from remotegpu.domain.shared.ids import new_id

log = logging.getLogger(__name__)

DELIVER_TASK = "notifications.deliver"
#: Page size when listing platform admins.
_PAGE = 500


@dataclass
class Dispatcher:
    uow: UnitOfWorkFactory  # the plain one: reading users and members must not notify again
    repo: NotificationRepository
    clock: Clock
    queue: TaskQueue
    signals: UnreadSignals
    email_enabled: bool
    #: Verified numbers of users (application/notifications/phones.py); None: no SMS channel.
    phones: Any = None

    async def dispatch(self, messages: list[Message]) -> list[Notification]:
        """Store and send the messages; return the notifications created (none twice)."""
        if not messages:
            return []
        now = self.clock.now()
        notifications: list[Notification] = []
        deliveries: list[Delivery] = []
        async with self.uow() as uow:
            for message in messages:
                for user in await self._recipients(uow, message):
                    prefs = await self.repo.get_preferences(user.id) or NotificationPreferences(user.id)
                    phone = None
                    if self.phones is not None and self.phones.enabled and prefs.allows(message.category, message.severity, Channel.SMS):
                        phone = await self.phones.verified_number(user.id)
                    made = self._notification_for(message, user, prefs, now, phone)
                    if made is not None:
                        notifications.append(made[0])
                        deliveries.extend(made[1])
        stored = await self.repo.add(notifications, deliveries)
        stored_ids = {n.id for n in stored}
        for d in deliveries:
            if (d.notification_id in stored_ids and d.channel in (Channel.EMAIL, Channel.SMS) and d.not_before is None
                    and d.status is DeliveryStatus.PENDING):
                await self.queue.enqueue(DELIVER_TASK, delivery_id=d.id)
        for user_id in {n.user_id for n in stored if n.in_inbox}:
            self.signals.notify(user_id)
        return stored

    def _notification_for(self, message: Message, user: Any, prefs: NotificationPreferences, now,
                          phone: str | None = None) -> tuple[Notification, list[Delivery]] | None:
        channels = [Channel.IN_APP]
        if self.email_enabled and user.email:
            channels.append(Channel.EMAIL)
        if phone:
            channels.append(Channel.SMS)
        wanted = [c for c in channels if prefs.allows(message.category, message.severity, c)]
        if not wanted:
            return None
        text = render(message.kind, prefs.locale, message.params)
        notification = Notification(
            id=new_id(), user_id=user.id, kind=message.kind, category=message.category, severity=message.severity,
            title=text.title, body=text.body, created_at=now, dedupe_key=f"{message.source_key}:{user.id}",
            link=message.link, in_inbox=Channel.IN_APP in wanted,
        )
        deliveries = []
        for channel in wanted:
            # In-app is delivered by being stored; email waits for a worker (and quiet hours).
            in_app = channel is Channel.IN_APP
            # Low-severity email of a digest category waits for the user's next digest.
            digest = prefs.in_digest(message.category, message.severity, channel)
            status = DeliveryStatus.SENT if in_app else DeliveryStatus.DIGEST if digest else DeliveryStatus.PENDING
            deliveries.append(Delivery(
                id=new_id(), notification_id=notification.id, user_id=user.id, channel=channel,
                idempotency_key=f"{notification.id}.{channel.value}", status=status, created_at=now, updated_at=now,
                not_before=prefs.next_digest(now) if digest else prefs.quiet_until(now, message.severity, channel),
                sent_at=now if in_app else None,
            ))
        return notification, deliveries

    async def _recipients(self, uow: UnitOfWork, message: Message) -> list[Any]:
        audience = message.audience
        ids: list[str] = list(audience.user_ids)
        if audience.workspace_id:
            for m in await uow.workspaces.list_members(audience.workspace_id):
                if not audience.roles or m.role in audience.roles:
                    ids.append(m.user_id)
        users = []
        for user_id in dict.fromkeys(ids):  # each once, in order
            user = await uow.users.get(user_id)
            if user is not None and user.is_active:
                users.append(user)
        if audience.admins:
            offset = 0
            while True:
                page, total = await uow.users.list(search=None, limit=_PAGE, offset=offset)
                users += [u for u in page if u.is_admin and u.is_active and u.id not in ids]
                offset += _PAGE
                if offset >= total:
                    break
        return users

    async def from_events(self, envs: list[tuple[rules.EnvironmentFacts, list]], audits: list[AuditEvent]) -> None:
        """Messages for what a committed use case recorded; dispatch them (failures are logged)."""
        messages = [m for facts, events in envs for e in events if (m := rules.from_environment_event(facts, e))]
        if audits:
            async with self.uow() as uow:
                for event in audits:
                    subject = rules.audit_subject(event)
                    user = await uow.users.get(subject) if subject else None
                    if user is not None and (m := rules.from_audit_event(event, user.username)):
                        messages.append(m)
        try:
            await self.dispatch(messages)
        except Exception:  # noqa: BLE001 - the use case is committed; its events stay in their logs
            log.exception("turning %d event(s) into notifications failed", len(messages))


def _note_environment(noted: list, env: Environment) -> None:
    if env.pending_events:  # the repository empties them when it writes them to the log
        facts = rules.EnvironmentFacts(env.id, env.name, env.workspace_id, env.owner_id)
        noted.append((facts, list(env.pending_events)))


class _NotedAudit:
    def __init__(self, inner: Any, noted: list):
        self._inner, self._noted = inner, noted

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def add(self, event: AuditEvent) -> None:
        await self._inner.add(event)
        if event.action in rules.AUDIT_ACTIONS:
            self._noted.append(event)


class NotifyingUnitOfWork:
    """A ``UnitOfWork`` whose committed environment and audit events become notifications."""

    def __init__(self, inner: UnitOfWork, dispatcher: Dispatcher):
        self._inner = inner
        self._dispatcher = dispatcher
        self._envs: list = []
        self._audits: list[AuditEvent] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def __aenter__(self) -> "NotifyingUnitOfWork":
        await self._inner.__aenter__()
        self._envs, self._audits = [], []
        self.environments = TappedEnvironments(self._inner.environments, lambda env: _note_environment(self._envs, env))
        self.audit = _NotedAudit(self._inner.audit, self._audits)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._envs.clear()
        self._audits.clear()
        await self._inner.__aexit__(*exc)

    async def rollback(self) -> None:
        self._envs.clear()
        self._audits.clear()
        await self._inner.rollback()

    async def commit(self) -> None:
        await self._inner.commit()
        envs, audits = list(self._envs), list(self._audits)
        self._envs.clear()  # the wrappers keep appending to these lists
        self._audits.clear()
        if envs or audits:
            await self._dispatcher.from_events(envs, audits)
