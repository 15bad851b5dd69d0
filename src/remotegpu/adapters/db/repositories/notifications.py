"""SQL NotificationRepository: each method is one short transaction of its own."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from remotegpu.adapters.db import tables as t
from remotegpu.domain.notifications.models import Category, Channel, Delivery, DeliveryStatus, Notification, Severity
from remotegpu.domain.notifications.preferences import NotificationPreferences, parse_clock

N, D, P = t.notifications, t.notification_deliveries, t.notification_preferences


def _notification_row(n: Notification) -> dict:
    return dict(id=n.id, user_id=n.user_id, kind=n.kind, category=n.category.value, severity=n.severity.value,
                title=n.title, body=n.body, link=n.link, in_inbox=n.in_inbox, dedupe_key=n.dedupe_key,
                created_at=n.created_at, read_at=n.read_at)


def _notification(r) -> Notification:
    return Notification(id=r.id, user_id=r.user_id, kind=r.kind, category=Category(r.category), severity=Severity(r.severity),
                        title=r.title, body=r.body, created_at=r.created_at, dedupe_key=r.dedupe_key, link=r.link,
                        in_inbox=r.in_inbox, read_at=r.read_at)


def _delivery_row(d: Delivery) -> dict:
    return dict(id=d.id, notification_id=d.notification_id, user_id=d.user_id, channel=d.channel.value,
                idempotency_key=d.idempotency_key, status=d.status.value, attempts=d.attempts, not_before=d.not_before,
                last_error=d.last_error, created_at=d.created_at, updated_at=d.updated_at, sent_at=d.sent_at)


def _delivery(r) -> Delivery:
    return Delivery(id=r.id, notification_id=r.notification_id, user_id=r.user_id, channel=Channel(r.channel),
                    idempotency_key=r.idempotency_key, status=DeliveryStatus(r.status), created_at=r.created_at,
                    updated_at=r.updated_at, not_before=r.not_before, attempts=r.attempts, last_error=r.last_error,
                    sent_at=r.sent_at)


class SqlNotificationRepository:
    def __init__(self, session_factory: async_sessionmaker[AsyncSession]):
        self._sessions = session_factory

    async def add(self, notifications: list[Notification], deliveries: list[Delivery]) -> list[Notification]:
        if not notifications:
            return []
        try:
            return await self._add(notifications, deliveries)
        except IntegrityError:
            # Another process stored some of them meanwhile: one at a time, keeping the rest.
            stored = []
            for n in notifications:
                try:
                    stored += await self._add([n], [d for d in deliveries if d.notification_id == n.id])
                except IntegrityError:
                    pass
            return stored

    async def _add(self, notifications: list[Notification], deliveries: list[Delivery]) -> list[Notification]:
        async with self._sessions() as s, s.begin():
            keys = [n.dedupe_key for n in notifications]
            existing = set((await s.execute(select(N.c.dedupe_key).where(N.c.dedupe_key.in_(keys)))).scalars())
            fresh = [n for n in notifications if n.dedupe_key not in existing]
            ids = {n.id for n in fresh}
            if fresh:
                await s.execute(N.insert(), [_notification_row(n) for n in fresh])
                rows = [_delivery_row(d) for d in deliveries if d.notification_id in ids]
                if rows:
                    await s.execute(D.insert(), rows)
            return fresh

    async def get(self, notification_id: str) -> Notification | None:
        async with self._sessions() as s:
            r = (await s.execute(select(N).where(N.c.id == notification_id))).first()
            return _notification(r) if r else None

    async def list_for_user(self, user_id: str, *, unread_only: bool, limit: int, offset: int) -> tuple[list[Notification], int]:
        where = [N.c.user_id == user_id, N.c.in_inbox.is_(True)]
        if unread_only:
            where.append(N.c.read_at.is_(None))
        async with self._sessions() as s:
            total = (await s.execute(select(func.count()).select_from(N).where(*where))).scalar_one()
            rows = (await s.execute(select(N).where(*where).order_by(N.c.created_at.desc(), N.c.id.desc()).limit(limit).offset(offset))).all()
            return [_notification(r) for r in rows], total

    async def unread_count(self, user_id: str) -> int:
        async with self._sessions() as s:
            return (await s.execute(select(func.count()).select_from(N).where(
                N.c.user_id == user_id, N.c.in_inbox.is_(True), N.c.read_at.is_(None)))).scalar_one()

    async def mark_read(self, user_id: str, notification_id: str, at: datetime) -> bool:
        async with self._sessions() as s, s.begin():
            found = (await s.execute(select(N.c.read_at).where(
                N.c.id == notification_id, N.c.user_id == user_id, N.c.in_inbox.is_(True)))).first()
            if found is None:
                return False
            if found.read_at is None:
                await s.execute(update(N).where(N.c.id == notification_id).values(read_at=at))
            return True

    async def mark_all_read(self, user_id: str, at: datetime) -> int:
        async with self._sessions() as s, s.begin():
            result = await s.execute(update(N).where(N.c.user_id == user_id, N.c.in_inbox.is_(True), N.c.read_at.is_(None)).values(read_at=at))
            return result.rowcount or 0

    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        async with self._sessions() as s:
            r = (await s.execute(select(D).where(D.c.id == delivery_id))).first()
            return _delivery(r) if r else None

    async def list_deliveries(self, notification_id: str) -> list[Delivery]:
        async with self._sessions() as s:
            rows = (await s.execute(select(D).where(D.c.notification_id == notification_id))).all()
            return [_delivery(r) for r in rows]

    async def claim_delivery(self, delivery_id: str, at: datetime) -> Delivery | None:
        # One conditional UPDATE: of two workers claiming at once, exactly one changes the row.
        async with self._sessions() as s, s.begin():
            result = await s.execute(
                update(D).where(D.c.id == delivery_id, D.c.status == DeliveryStatus.PENDING.value,
                                or_(D.c.not_before.is_(None), D.c.not_before <= at))
                .values(status=DeliveryStatus.SENDING.value, attempts=D.c.attempts + 1, updated_at=at)
            )
            if result.rowcount != 1:
                return None
            r = (await s.execute(select(D).where(D.c.id == delivery_id))).first()
            return _delivery(r)

    async def finish_delivery(self, delivery_id: str, status: DeliveryStatus, at: datetime, error: str = "") -> None:
        values = dict(status=status.value, updated_at=at, last_error=error)
        if status is DeliveryStatus.SENT:
            values["sent_at"] = at
        async with self._sessions() as s, s.begin():
            await s.execute(update(D).where(D.c.id == delivery_id).values(**values))

    async def due_deliveries(self, now: datetime, limit: int) -> list[Delivery]:
        async with self._sessions() as s:
            rows = (await s.execute(select(D).where(
                D.c.status == DeliveryStatus.PENDING.value, or_(D.c.not_before.is_(None), D.c.not_before <= now),
            ).order_by(D.c.created_at).limit(limit))).all()
            return [_delivery(r) for r in rows]

    async def expire_sending(self, before: datetime, at: datetime) -> int:
        async with self._sessions() as s, s.begin():
            result = await s.execute(update(D).where(and_(D.c.status == DeliveryStatus.SENDING.value, D.c.updated_at < before)).values(
                status=DeliveryStatus.UNKNOWN.value, updated_at=at, last_error="the worker stopped mid-send; not resent"))
            return result.rowcount or 0

    async def due_digest_users(self, now: datetime, limit: int) -> list[str]:
        async with self._sessions() as s:
            rows = await s.execute(select(D.c.user_id, func.min(D.c.not_before).label("due")).where(
                D.c.status == DeliveryStatus.DIGEST.value, D.c.not_before <= now,
            ).group_by(D.c.user_id).order_by("due").limit(limit))
            return [r.user_id for r in rows]

    async def claim_digest(self, user_id: str, at: datetime) -> list[Delivery]:
        # One conditional UPDATE marks this claim (a token in last_error) on exactly the rows it moved:
        # of two workers claiming at once, each gets only what it changed.
        token = f"claim:{uuid.uuid4().hex}"
        async with self._sessions() as s, s.begin():
            await s.execute(update(D).where(D.c.user_id == user_id, D.c.status == DeliveryStatus.DIGEST.value).values(
                status=DeliveryStatus.SENDING.value, attempts=D.c.attempts + 1, updated_at=at, last_error=token))
            rows = (await s.execute(select(D).where(D.c.user_id == user_id, D.c.last_error == token)
                                    .order_by(D.c.created_at, D.c.id))).all()
            await s.execute(update(D).where(D.c.user_id == user_id, D.c.last_error == token).values(last_error=""))
        claimed = [_delivery(r) for r in rows]
        for d in claimed:
            d.last_error = ""
        return claimed

    async def get_preferences(self, user_id: str) -> NotificationPreferences | None:
        async with self._sessions() as s:
            r = (await s.execute(select(P).where(P.c.user_id == user_id))).first()
        if r is None:
            return None
        disabled = set()
        for item in r.disabled or []:
            category, _, channel = item.partition("/")
            try:
                disabled.add((Category(category), Channel(channel)))
            except ValueError:
                continue  # a category or channel that no longer exists
        return NotificationPreferences(
            user_id=r.user_id, locale=r.locale, timezone=r.timezone,
            quiet_start=parse_clock(r.quiet_start, "quiet_start") if r.quiet_start else None,
            quiet_end=parse_clock(r.quiet_end, "quiet_end") if r.quiet_end else None, disabled=disabled,
            sms=_categories(r.sms or []),
            digest=_categories((r.digest or {}).get("categories", [])),
            digest_period=(r.digest or {}).get("period", "daily"),
        )

    async def save_preferences(self, p: NotificationPreferences) -> None:
        from remotegpu.domain.shared.clock import utcnow

        values = dict(
            locale=p.locale, timezone=p.timezone,
            quiet_start=p.quiet_start.strftime("%H:%M") if p.quiet_start else None,
            quiet_end=p.quiet_end.strftime("%H:%M") if p.quiet_end else None,
            disabled=sorted(f"{c.value}/{ch.value}" for c, ch in p.disabled), updated_at=utcnow(),
            sms=sorted(c.value for c in p.sms),
            digest={"categories": sorted(c.value for c in p.digest), "period": p.digest_period},
        )
        async with self._sessions() as s, s.begin():
            result = await s.execute(update(P).where(P.c.user_id == p.user_id).values(**values))
            if result.rowcount != 1:
                await s.execute(P.insert().values(user_id=p.user_id, **values))


def _categories(values: list) -> set[Category]:
    found = set()
    for v in values:
        try:
            found.add(Category(v))
        except ValueError:
            continue  # a category that no longer exists
    return found
