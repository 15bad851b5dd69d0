"""When to try a delivery again: the Standard Webhooks schedule, jittered."""

from __future__ import annotations

import random
from datetime import timedelta

#: Delay before attempt n+1 (attempt 1 is immediate): 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
SCHEDULE = (
    timedelta(0), timedelta(seconds=5), timedelta(minutes=5), timedelta(minutes=30),
    timedelta(hours=2), timedelta(hours=5), timedelta(hours=10), timedelta(hours=10),
)
MAX_ATTEMPTS = len(SCHEDULE)
JITTER = 0.1  # +-10%: retries of many deliveries that failed together spread out
#: A Retry-After longer than this is capped (a misbehaving receiver must not park a delivery forever).
MAX_RETRY_AFTER = timedelta(hours=10)


def next_delay(attempts_made: int, retry_after: timedelta | None = None, rng: random.Random | None = None) -> timedelta | None:
    """Delay before the next attempt after ``attempts_made`` failures; None: give up."""
    if attempts_made >= MAX_ATTEMPTS:
        return None
    base = SCHEDULE[attempts_made]
    r = rng or random
    delay = base * (1 + r.uniform(-JITTER, JITTER))
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return delay
