"""In-memory NotificationRepository (tests, ``persistence=memory``)."""

from __future__ import annotations

import asyncio
import copy
from dataclasses import replace
from datetime import datetime

from remotegpu.domain.notifications.models import Delivery, DeliveryStatus, Notification
from remotegpu.domain.notifications.preferences import NotificationPreferences


class InMemoryNotificationRepository:
    def __init__(self) -> None:
        self._notifications: dict[str, Notification] = {}
        self._by_dedupe: dict[str, str] = {}
        self._deliveries: dict[str, Delivery] = {}
        self._preferences: dict[str, NotificationPreferences] = {}
        self._lock = asyncio.Lock()

    async def add(self, notifications: list[Notification], deliveries: list[Delivery]) -> list[Notification]:
        async with self._lock:
            stored = []
            for n in notifications:
                if n.dedupe_key in self._by_dedupe:
                    continue
                self._notifications[n.id] = replace(n)
                self._by_dedupe[n.dedupe_key] = n.id
                stored.append(n)
            ids = {n.id for n in stored}
            for d in deliveries:
                if d.notification_id in ids:
                    self._deliveries[d.id] = replace(d)
            return stored

    async def get(self, notification_id: str) -> Notification | None:
        n = self._notifications.get(notification_id)
        return replace(n) if n else None

    def _inbox(self, user_id: str) -> list[Notification]:
        return [n for n in self._notifications.values() if n.user_id == user_id and n.in_inbox]

    async def list_for_user(self, user_id: str, *, unread_only: bool, limit: int, offset: int) -> tuple[list[Notification], int]:
        items = [n for n in self._inbox(user_id) if not unread_only or n.read_at is None]
        items.sort(key=lambda n: (n.created_at, n.id), reverse=True)
        return [replace(n) for n in items[offset:offset + limit]], len(items)

    async def unread_count(self, user_id: str) -> int:
        return sum(1 for n in self._inbox(user_id) if n.read_at is None)

    async def mark_read(self, user_id: str, notification_id: str, at: datetime) -> bool:
        n = self._notifications.get(notification_id)
        if n is None or n.user_id != user_id or not n.in_inbox:
            return False
        n.read_at = n.read_at or at
        return True

    async def mark_all_read(self, user_id: str, at: datetime) -> int:
        unread = [n for n in self._inbox(user_id) if n.read_at is None]
        for n in unread:
            n.read_at = at
        return len(unread)

    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        d = self._deliveries.get(delivery_id)
        return replace(d) if d else None

    async def list_deliveries(self, notification_id: str) -> list[Delivery]:
        return [replace(d) for d in self._deliveries.values() if d.notification_id == notification_id]

    async def claim_delivery(self, delivery_id: str, at: datetime) -> Delivery | None:
        async with self._lock:
            d = self._deliveries.get(delivery_id)
            if d is None or d.status is not DeliveryStatus.PENDING or (d.not_before and d.not_before > at):
                return None
            d.status, d.attempts, d.updated_at = DeliveryStatus.SENDING, d.attempts + 1, at
            return replace(d)

    async def finish_delivery(self, delivery_id: str, status: DeliveryStatus, at: datetime, error: str = "") -> None:
        d = self._deliveries[delivery_id]
        d.status, d.updated_at, d.last_error = status, at, error
        if status is DeliveryStatus.SENT:
            d.sent_at = at

    async def due_deliveries(self, now: datetime, limit: int) -> list[Delivery]:
        due = [d for d in self._deliveries.values()
               if d.status is DeliveryStatus.PENDING and (d.not_before is None or d.not_before <= now)]
        return [replace(d) for d in sorted(due, key=lambda d: d.created_at)[:limit]]

    async def expire_sending(self, before: datetime, at: datetime) -> int:
        stale = [d for d in self._deliveries.values() if d.status is DeliveryStatus.SENDING and d.updated_at < before]
        for d in stale:
            d.status, d.updated_at, d.last_error = DeliveryStatus.UNKNOWN, at, "the worker stopped mid-send; not resent"
        return len(stale)

    async def due_digest_users(self, now: datetime, limit: int) -> list[str]:
        due = sorted((d for d in self._deliveries.values()
                      if d.status is DeliveryStatus.DIGEST and d.not_before is not None and d.not_before <= now),
                     key=lambda d: d.not_before)
        return list(dict.fromkeys(d.user_id for d in due))[:limit]

    async def claim_digest(self, user_id: str, at: datetime) -> list[Delivery]:
        async with self._lock:
            mine = [d for d in self._deliveries.values() if d.user_id == user_id and d.status is DeliveryStatus.DIGEST]
            for d in mine:
                d.status, d.attempts, d.updated_at = DeliveryStatus.SENDING, d.attempts + 1, at
            return [replace(d) for d in sorted(mine, key=lambda d: (d.created_at, d.id))]

    async def get_preferences(self, user_id: str) -> NotificationPreferences | None:
        p = self._preferences.get(user_id)
        return copy.deepcopy(p) if p else None

    async def save_preferences(self, preferences: NotificationPreferences) -> None:
        self._preferences[preferences.user_id] = copy.deepcopy(preferences)
