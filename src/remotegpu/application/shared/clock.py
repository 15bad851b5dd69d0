from __future__ import annotations

from datetime import datetime, timedelta

from remotegpu.domain.shared.clock import utcnow


class SystemClock:
    def now(self) -> datetime:
        return utcnow()


class FrozenClock:
    """A clock tests move by hand."""

    def __init__(self, start: datetime | None = None):
        self._now = start or utcnow()

    def now(self) -> datetime:
        return self._now

    def advance(self, **delta: float) -> None:
        self._now += timedelta(**delta)
