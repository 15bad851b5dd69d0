"""Per-user notification preferences: category × channel switches, language, quiet hours.

Security notifications and critical ones cannot be turned off: switching them off is
refused, and ``allows`` says yes regardless. Quiet hours hold back email (never the
in-app inbox) until they end, in the user's own time zone; critical ones bypass them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from remotegpu.domain.notifications.models import Category, Channel, Severity
from remotegpu.domain.shared.errors import InvalidInput

LOCALES = ("en", "zh-CN")
DIGEST_PERIODS = ("hourly", "daily")
#: Daily digests go out at this hour of the user's own day.
DIGEST_HOUR = 8
DEFAULT_LOCALE = "en"
#: Categories nobody may switch off, on any channel.
ALWAYS_ON = frozenset({Category.SECURITY})


def check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"unknown time zone {name!r}", details={"field": "timezone"}) from None
    return name


def parse_clock(value: str, field_name: str) -> time:
    try:
        hh, mm = value.split(":")
        if len(hh) != 2 or len(mm) != 2:
            raise ValueError
        return time(int(hh), int(mm))
    except ValueError:
        raise InvalidInput(f"{field_name} must be HH:MM (24-hour clock)", details={"field": field_name}) from None


@dataclass
class NotificationPreferences:
    user_id: str
    locale: str = DEFAULT_LOCALE
    timezone: str = "UTC"
    quiet_start: time | None = None
    quiet_end: time | None = None
    #: (category, channel) pairs switched off; everything else is on (in-app and email).
    disabled: set[tuple[Category, Channel]] = field(default_factory=set)
    #: SMS is opt-in (it costs, and numbers are rate-limited): categories sent by SMS too.
    sms: set[Category] = field(default_factory=set)
    #: Categories whose low-severity (info) emails are batched into one digest per period.
    digest: set[Category] = field(default_factory=set)
    digest_period: str = "daily"  # "hourly" (at the top of each hour) or "daily" (at DIGEST_HOUR, local time)

    def validate(self) -> None:
        if self.locale not in LOCALES:
            raise InvalidInput(f"locale must be one of {', '.join(LOCALES)}", details={"field": "locale"})
        check_timezone(self.timezone)
        if (self.quiet_start is None) != (self.quiet_end is None):
            raise InvalidInput("quiet hours need both a start and an end", details={"field": "quiet_hours"})
        if self.quiet_start is not None and self.quiet_start == self.quiet_end:
            raise InvalidInput("quiet hours cannot start and end at the same time", details={"field": "quiet_hours"})
        if self.digest_period not in DIGEST_PERIODS:
            raise InvalidInput(f"digest period must be one of {', '.join(DIGEST_PERIODS)}", details={"field": "digest.period"})
        if self.digest & ALWAYS_ON:
            raise InvalidInput("security notifications are never batched into a digest", code="always_on",
                               details={"field": "digest.categories"})
        locked = sorted(f"{c.value}/{ch.value}" for c, ch in self.disabled if c in ALWAYS_ON)
        if locked:
            raise InvalidInput("security notifications cannot be turned off", code="always_on",
                               details={"field": "channels", "locked": locked})

    def allows(self, category: Category, severity: Severity, channel: Channel) -> bool:
        if channel is Channel.SMS:  # critical ones reach a verified number whatever the switches
            return severity is Severity.CRITICAL or category in self.sms
        if category in ALWAYS_ON or severity is Severity.CRITICAL:
            return True
        return (category, channel) not in self.disabled

    def quiet_until(self, now: datetime, severity: Severity, channel: Channel) -> datetime | None:
        """When quiet hours hold this back: their end (UTC); None to send now."""
        if self.quiet_start is None or self.quiet_end is None or severity is Severity.CRITICAL or channel is Channel.IN_APP:
            return None
        zone = ZoneInfo(self.timezone)
        local = now.astimezone(zone)
        t = local.time().replace(tzinfo=None)
        start, end = self.quiet_start, self.quiet_end
        if start < end:  # e.g. 13:00-14:00, within one day
            if not (start <= t < end):
                return None
            end_day = local.date()
        else:  # e.g. 22:00-07:00, across midnight
            if end <= t < start:
                return None
            end_day = local.date() if t < end else local.date() + timedelta(days=1)
        # Wall-clock end in the user's zone (ZoneInfo resolves DST gaps/folds).
        return datetime.combine(end_day, end, tzinfo=zone).astimezone(now.tzinfo)

    def in_digest(self, category: Category, severity: Severity, channel: Channel) -> bool:
        """Email of an info-level notification in a digest category waits for the digest."""
        return channel is Channel.EMAIL and severity is Severity.INFO and category in self.digest and category not in ALWAYS_ON

    def next_digest(self, now: datetime) -> datetime:
        """When the digest that a notification arriving ``now`` joins goes out (UTC)."""
        zone = ZoneInfo(self.timezone)
        local = now.astimezone(zone)
        if self.digest_period == "hourly":
            at = local.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
            return at.astimezone(now.tzinfo)
        at = datetime.combine(local.date(), time(DIGEST_HOUR), tzinfo=zone)
        if at <= local:
            at = datetime.combine(local.date() + timedelta(days=1), time(DIGEST_HOUR), tzinfo=zone)
        return at.astimezone(now.tzinfo)
