"""Business hours: how much working time lies between two instants, and when N working
seconds from now end. SLA clocks (sla.py) count in this time.

``BusinessHours.parse("mon-fri 09:00-18:00", "Asia/Shanghai")``, or ``"24x7"``. Days are
walked one by one in the calendar's own time zone (DST handled by ``zoneinfo``), so a
computation costs one step per calendar day it spans.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_SPEC = re.compile(r"^\s*([a-z]{3})(?:\s*-\s*([a-z]{3}))?\s+(\d{2}):(\d{2})\s*-\s*(\d{2}):(\d{2})\s*$")
#: A due date further away than this is not computed (a target can never be that long).
_MAX_DAYS = 3660


class CalendarError(ValueError):
    pass


@dataclass(frozen=True)
class BusinessHours:
    timezone: str = "UTC"
    weekdays: frozenset[int] = frozenset(range(5))  # Monday = 0
    start: time = time(9, 0)
    end: time = time(18, 0)
    always: bool = False  # 24x7: every second counts

    @staticmethod
    def parse(spec: str, tz: str = "UTC") -> "BusinessHours":
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise CalendarError(f"unknown time zone {tz!r}") from None
        text = spec.strip().lower()
        if text in ("24x7", "24/7", "always"):
            return BusinessHours(timezone=tz, weekdays=frozenset(range(7)), start=time(0), end=time(0), always=True)
        m = _SPEC.match(text)
        if not m or m.group(1) not in _DAYS or (m.group(2) and m.group(2) not in _DAYS):
            raise CalendarError(f"business hours {spec!r}: expected e.g. 'mon-fri 09:00-18:00' or '24x7'")
        first = _DAYS.index(m.group(1))
        last = _DAYS.index(m.group(2)) if m.group(2) else first
        days = {d % 7 for d in range(first, last + 1 if last >= first else last + 8)}
        try:
            start, end = time(int(m.group(3)), int(m.group(4))), time(int(m.group(5)), int(m.group(6)))
        except ValueError:
            raise CalendarError(f"business hours {spec!r}: bad time of day") from None
        if not start < end:
            raise CalendarError(f"business hours {spec!r}: the day must end after it starts")
        return BusinessHours(timezone=tz, weekdays=frozenset(days), start=start, end=end)

    def describe(self) -> str:
        if self.always:
            return "24x7"
        days = ",".join(_DAYS[d] for d in sorted(self.weekdays))
        return f"{days} {self.start:%H:%M}-{self.end:%H:%M} {self.timezone}"

    # --- the arithmetic -------------------------------------------------------------------

    def _window(self, day: date) -> tuple[datetime, datetime] | None:
        if day.weekday() not in self.weekdays:
            return None
        zone = ZoneInfo(self.timezone)
        return (datetime.combine(day, self.start, tzinfo=zone).astimezone(timezone.utc),
                datetime.combine(day, self.end, tzinfo=zone).astimezone(timezone.utc))

    def seconds_between(self, a: datetime, b: datetime) -> float:
        """Business seconds in [a, b) (0 when b <= a)."""
        if b <= a:
            return 0.0
        if self.always:
            return (b - a).total_seconds()
        zone = ZoneInfo(self.timezone)
        day, last = a.astimezone(zone).date(), b.astimezone(zone).date()
        total = 0.0
        while day <= last:
            window = self._window(day)
            if window is not None:
                lo, hi = max(a, window[0]), min(b, window[1])
                if hi > lo:
                    total += (hi - lo).total_seconds()
            day += timedelta(days=1)
        return total

    def add(self, a: datetime, seconds: float) -> datetime | None:
        """The instant ``seconds`` business seconds after ``a`` (None: more than ten years away)."""
        if seconds <= 0:
            return a
        if self.always:
            return a + timedelta(seconds=seconds)
        zone = ZoneInfo(self.timezone)
        day = a.astimezone(zone).date()
        left = seconds
        for _ in range(_MAX_DAYS):
            window = self._window(day)
            if window is not None:
                lo = max(a, window[0])
                if window[1] > lo:
                    available = (window[1] - lo).total_seconds()
                    if available >= left:
                        return lo + timedelta(seconds=left)
                    left -= available
            day += timedelta(days=1)
        return None
