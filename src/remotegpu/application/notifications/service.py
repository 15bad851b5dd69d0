"""The inbox and preferences use cases (the signed-in user's own notifications only)."""

from __future__ import annotations

from dataclasses import dataclass

from remotegpu.application.notifications.ports import NotificationRepository, UnreadSignals
from remotegpu.application.shared.ports import Clock
from remotegpu.domain.notifications.models import Notification
from remotegpu.domain.notifications.preferences import NotificationPreferences
from remotegpu.domain.shared.errors import NotFound


@dataclass
class NotificationService:
    repo: NotificationRepository
    clock: Clock
    signals: UnreadSignals
    email_enabled: bool

    async def inbox(self, user_id: str, *, unread_only: bool, limit: int, offset: int) -> tuple[list[Notification], int, int]:
        """(page, total, unread count)."""
        items, total = await self.repo.list_for_user(user_id, unread_only=unread_only, limit=limit, offset=offset)
        return items, total, await self.repo.unread_count(user_id)

    async def unread_count(self, user_id: str) -> int:
        return await self.repo.unread_count(user_id)

    async def mark_read(self, user_id: str, notification_id: str) -> None:
        if not await self.repo.mark_read(user_id, notification_id, self.clock.now()):
            raise NotFound("notification not found")
        self.signals.notify(user_id)

    async def mark_all_read(self, user_id: str) -> int:
        n = await self.repo.mark_all_read(user_id, self.clock.now())
        self.signals.notify(user_id)
        return n

    async def preferences(self, user_id: str) -> NotificationPreferences:
        return await self.repo.get_preferences(user_id) or NotificationPreferences(user_id)

    async def set_preferences(self, preferences: NotificationPreferences) -> NotificationPreferences:
        preferences.validate()
        await self.repo.save_preferences(preferences)
        return preferences
