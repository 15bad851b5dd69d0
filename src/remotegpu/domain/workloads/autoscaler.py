"""Autoscaling of inference services on concurrency (pure; the router feeds it).

The router reports, about once a second, the requests in flight for a service (and
how many arrived). The autoscaler turns that sliding window into a replica count,
modelled on Knative's KPA and dstack:

* **target**: ``target_concurrency`` in-flight requests per replica;
* **up** (stable): desired = ⌈average concurrency over the last ``up_window_s`` (30 s)
  / target⌉ — sustained load is followed within about 30 s;
* **panic** (bursts): when the average over the last ``panic_window_s`` (6 s) needs at
  least ``panic_threshold`` × the current replicas, the autoscaler panics for
  ``up_window_s``: it follows the 6 s average at once and does not scale down meanwhile;
* **down**: a lower count is taken only once every decision of the last
  ``scale_down_delay_s`` (5 min) was that low — the replica count is the maximum desired
  over that window, so it never flaps down on a lull and back up;
* **to zero**: with ``min_replicas`` 0, after ``scale_to_zero_after_s`` without any
  request (in flight or arriving), 0; a request arriving at zero (held by the router)
  asks for 1 at once (cold start);
* always clamped to ``min_replicas``..``max_replicas``.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from remotegpu.domain.shared.errors import InvalidInput

MAX_REPLICAS = 64


@dataclass(frozen=True)
class AutoscalePolicy:
    min_replicas: int = 0
    max_replicas: int = 1
    target_concurrency: float = 10.0
    up_window_s: float = 30.0
    panic_window_s: float = 6.0
    panic_threshold: float = 2.0
    scale_down_delay_s: float = 300.0
    scale_to_zero_after_s: float = 300.0

    def __post_init__(self) -> None:
        if not 0 <= self.min_replicas <= self.max_replicas <= MAX_REPLICAS or self.max_replicas < 1:
            raise InvalidInput(f"replicas: 0 <= min <= max <= {MAX_REPLICAS}, max >= 1", details={"field": "min_replicas"})
        if self.target_concurrency <= 0:
            raise InvalidInput("target_concurrency must be positive", details={"field": "target_concurrency"})
        for name in ("up_window_s", "panic_window_s", "scale_down_delay_s", "scale_to_zero_after_s"):
            if getattr(self, name) <= 0:
                raise InvalidInput(f"{name} must be positive", details={"field": name})


@dataclass
class Autoscaler:
    policy: AutoscalePolicy
    # (t, in-flight requests, arrivals since the previous sample)
    _samples: deque = field(default_factory=deque)
    _decisions: deque = field(default_factory=deque)  # (t, desired before the down delay)
    _last_request_at: float | None = None
    _panic_until: float = float("-inf")
    _panic_peak: int = 0

    def observe(self, now: float, in_flight: float, arrivals: int = 0) -> None:
        self._samples.append((now, float(in_flight), arrivals))
        if in_flight > 0 or arrivals > 0:
            self._last_request_at = now
        horizon = now - max(self.policy.up_window_s, self.policy.panic_window_s)
        while self._samples and self._samples[0][0] < horizon:
            self._samples.popleft()

    def _average(self, now: float, window: float) -> float:
        values = [c for t, c, _ in self._samples if t > now - window]
        return sum(values) / len(values) if values else 0.0

    def decide(self, now: float, current: int, waiting: int = 0) -> int:
        """The replica count to run now, given ``current`` (ready or starting) replicas and
        ``waiting`` requests held by the router for want of a ready replica."""
        p = self.policy
        target = p.target_concurrency
        stable = math.ceil(self._average(now, p.up_window_s) / target - 1e-9)
        panic = math.ceil(self._average(now, p.panic_window_s) / target - 1e-9)
        desired = stable
        if panic >= max(1, current) * p.panic_threshold or (current == 0 and panic > 0):
            self._panic_until = now + p.up_window_s  # panic mode: follow the burst, never down
        if now < self._panic_until:
            desired = max(desired, panic, min(current, self._panic_peak))
            self._panic_peak = max(self._panic_peak, desired)
        else:
            self._panic_peak = 0
        if waiting > 0:
            desired = max(desired, 1)  # a held request at zero: cold start now
        # Scale down only once every decision over the delay was that low.
        self._decisions.append((now, desired))
        while self._decisions and self._decisions[0][0] <= now - p.scale_down_delay_s:
            self._decisions.popleft()
        held = max(d for _, d in self._decisions)
        result = max(desired, min(current, held)) if desired < current else desired
        idle = self._last_request_at is None or now - self._last_request_at >= p.scale_to_zero_after_s
        if result == 0 and not idle and waiting == 0:
            result = max(1, min(current, 1))  # keep one warm until the idle period passed
        return max(p.min_replicas, min(p.max_replicas, result))
