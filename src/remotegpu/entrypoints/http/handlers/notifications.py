"""The signed-in user's notifications: inbox, read marks, preferences, the live unread count."""

from __future__ import annotations

import asyncio
import json

from remotegpu.domain.notifications.models import Category, Channel
from remotegpu.domain.notifications.preferences import ALWAYS_ON, NotificationPreferences, parse_clock
from remotegpu.entrypoints.http.handlers import api
from remotegpu.entrypoints.http.routing import Call
from remotegpu.entrypoints.http.schemas.notifications import (
    ChannelSwitches,
    Digest,
    InboxOut,
    InboxQuery,
    NotificationOut,
    PreferencesIn,
    PreferencesOut,
    QuietHours,
    ReadAllOut,
)

TAGS = ["notifications"]


def notification_out(n) -> NotificationOut:
    return NotificationOut(id=n.id, kind=n.kind, category=n.category.value, severity=n.severity.value, title=n.title,
                           body=n.body, link=n.link, created_at=n.created_at, read_at=n.read_at)


@api.get("/api/v1/notifications", query=InboxQuery, response=InboxOut, tags=TAGS, errors=[401, 422])
async def list_notifications(call: Call) -> InboxOut:
    """The inbox, newest first, with the unread count."""
    q: InboxQuery = call.query
    items, total, unread = await call.container.notification_service().inbox(
        call.user.id, unread_only=q.unread, limit=q.limit, offset=q.offset)
    return InboxOut(items=[notification_out(n) for n in items], total=total, unread=unread)


@api.post("/api/v1/notifications/read-all", response=ReadAllOut, tags=TAGS, errors=[401])
async def read_all(call: Call) -> ReadAllOut:
    """Mark every notification read."""
    marked = await call.container.notification_service().mark_all_read(call.user.id)
    return ReadAllOut(marked=marked, unread=0)


@api.post("/api/v1/notifications/{notification_id}/read", status=204, tags=TAGS, errors=[401, 404])
async def read_one(call: Call) -> None:
    """Mark one notification read (another user's answers 404)."""
    await call.container.notification_service().mark_read(call.user.id, call.path("notification_id"))


def _prefs_out(p: NotificationPreferences, email_enabled: bool, sms_enabled: bool = False) -> PreferencesOut:
    categories = {
        c.value: ChannelSwitches(in_app=(c, Channel.IN_APP) not in p.disabled, email=(c, Channel.EMAIL) not in p.disabled,
                                 sms=c in p.sms)
        for c in Category
    }
    quiet = QuietHours(start=p.quiet_start.strftime("%H:%M"), end=p.quiet_end.strftime("%H:%M")) if p.quiet_start and p.quiet_end else None
    return PreferencesOut(
        locale=p.locale, timezone=p.timezone, quiet_hours=quiet, categories=categories,
        always_on=sorted(c.value for c in ALWAYS_ON),
        digest=Digest(categories=sorted(c.value for c in p.digest), period=p.digest_period), channels=["in_app"] + (["email"] if email_enabled else []) + (["sms"] if sms_enabled else []),
    )


@api.get("/api/v1/users/me/notification-preferences", response=PreferencesOut, tags=TAGS, errors=[401])
async def get_preferences(call: Call) -> PreferencesOut:
    """Language, time zone, quiet hours and the category × channel switches."""
    service = call.container.notification_service()
    return _prefs_out(await service.preferences(call.user.id), service.email_enabled, call.container.phone_service().enabled)


@api.put("/api/v1/users/me/notification-preferences", body=PreferencesIn, response=PreferencesOut, tags=TAGS, errors=[401, 422])
async def put_preferences(call: Call) -> PreferencesOut:
    """Replace the preferences; security notifications cannot be turned off (422)."""
    b: PreferencesIn = call.body
    disabled, sms = set(), set()
    for name, switches in b.categories.items():
        if switches.sms:
            sms.add(Category(name))
        if not switches.in_app:
            disabled.add((Category(name), Channel.IN_APP))
        if not switches.email:
            disabled.add((Category(name), Channel.EMAIL))
    prefs = NotificationPreferences(
        user_id=call.user.id, locale=b.locale, timezone=b.timezone,
        quiet_start=parse_clock(b.quiet_hours.start, "quiet_hours.start") if b.quiet_hours else None,
        quiet_end=parse_clock(b.quiet_hours.end, "quiet_hours.end") if b.quiet_hours else None,
        disabled=disabled, sms=sms, digest={Category(c) for c in b.digest.categories}, digest_period=b.digest.period,
    )
    service = call.container.notification_service()
    return _prefs_out(await service.set_preferences(prefs), service.email_enabled, call.container.phone_service().enabled)


# --- the unread count on the event stream (events.py) --------------------------------
#: What a merged subscription returns when the user's unread count may have changed.
UNREAD = object()


class _WithUnread:
    """An environment-change subscription that also wakes when the unread count changes."""

    def __init__(self, inner, signal):
        self._inner, self._signal = inner, signal

    async def get(self):
        change = asyncio.ensure_future(self._inner.get())
        signal = asyncio.ensure_future(self._signal.wait())
        try:
            done, _ = await asyncio.wait({change, signal}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (change, signal):
                if not task.done():
                    task.cancel()
        if change in done:
            if signal in done:
                self._signal.set()  # not lost: the next get() answers it
            return change.result()
        return UNREAD

    def close(self) -> None:
        self._signal.close()
        self._inner.close()


class UnreadPush:
    """Sends ``event: notifications`` with ``{"type": "notifications", "unread": n}`` when n changes."""

    def __init__(self, call: Call):
        self._call = call
        # Nothing is sent while the count stays 0: the console reads the count when it
        # loads; a stream opened with unread notifications sends the count at once.
        self._last = 0

    def wrap(self, subscription):
        return _WithUnread(subscription, self._call.container.unread_signals().subscribe(self._call.user.id))

    async def frame(self) -> bytes:
        """The event when the count changed since the last one sent, else nothing.

        Also called on every ping: a notification written by another server process
        reaches this stream then."""
        count = await self._call.container.notification_service().unread_count(self._call.user.id)
        if count == self._last:
            return b""
        self._last = count
        data = json.dumps({"type": "notifications", "unread": count}, separators=(",", ":"))
        return f"event: notifications\ndata: {data}\n\n".encode()
