"""Metering: an environment's observed lifecycle → usage segments.

A ``Reading`` is one observed status of an environment (written in the same transaction
as its status change, with what it held then). ``segments_of`` turns all readings of one
environment into its usage segments, deterministically:

* readings are ordered by (time, sequence); exact duplicates count once, so a replayed,
  duplicated or reordered delivery changes nothing; times are cut to the second (several
  readings in one second: the last one holds from that second);
* compute (GPU × model, CPU cores, memory GiB — or one flat "no-GPU mode" line for an
  environment started without its GPUs) is held while the environment is **running as
  reported by its agent**; its disk is held from its first start (``starting``/``running``)
  until it is ``deleted``, stopped or not;
* a segment ends where what is held changes, where its price changes (effective-dated
  prices) and at the start of each UTC month (bills are monthly); the last one is open
  (``end`` None) while the resource is still held;
* a segment's key is ``environment:kind:start`` (epoch seconds): the same history always
  gives the same keys, so storing segments is an idempotent upsert.

A running environment therefore has exactly one open segment per compute resource it
holds, and no two segments of one resource overlap.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache

from remotegpu.domain.billing.money import rate
from remotegpu.domain.billing.prices import PriceBook, ResourceKind

RUNNING = "running"
DELETED = "deleted"
_DISK_CREATED = {"starting", "running"}


@dataclass(frozen=True)
class Reading:
    """One observed status with the resources the environment had then."""

    environment_id: str
    workspace_id: str
    owner_id: str
    at: datetime
    status: str
    gpu_model: str = ""
    gpu_count: int = 0  # GPUs it asked for
    with_gpu: bool = True  # False: started in no-GPU mode
    cpu_cores: int = 0
    memory_gib: int = 0
    disk_gib: int = 0
    seq: int = 0  # order of readings written at the same instant

    def held(self, disk_exists: bool) -> dict[tuple[ResourceKind, str], int]:
        out: dict[tuple[ResourceKind, str], int] = {}
        if self.status == RUNNING:
            if self.gpu_count and not self.with_gpu:
                out[(ResourceKind.NOGPU, "")] = 1
            else:
                if self.gpu_count:
                    out[(ResourceKind.GPU, self.gpu_model or "")] = self.gpu_count
                if self.cpu_cores:
                    out[(ResourceKind.CPU, "")] = self.cpu_cores
                if self.memory_gib:
                    out[(ResourceKind.MEMORY, "")] = self.memory_gib
        if disk_exists and self.status != DELETED and self.disk_gib:
            out[(ResourceKind.DISK, "")] = self.disk_gib
        return out


@dataclass(frozen=True)
class Segment:
    key: str
    environment_id: str
    workspace_id: str
    owner_id: str
    kind: ResourceKind
    model: str
    quantity: int
    start: datetime
    end: datetime | None  # None: still open
    price_id: str | None  # None: unpriced then (free)
    unit_price: int

    def amount(self, until: datetime | None = None) -> int:
        """Rated amount in minor units: to ``end``, or to ``until`` while open (``money.rate``)."""
        stop = self.end if self.end is not None else until
        if stop is None:
            raise ValueError("an open segment is rated up to an instant")
        return rate(self.quantity, self.unit_price, self.seconds(stop), self.kind.period_seconds)

    def seconds(self, until: datetime) -> int:
        return max(0, int(((self.end or until) - self.start).total_seconds()))


def second(t: datetime) -> datetime:
    """Cut to the whole second, in UTC."""
    if t.tzinfo is not timezone.utc:
        t = t.astimezone(timezone.utc)
    return t.replace(microsecond=0) if t.microsecond else t


@lru_cache(maxsize=1024)
def _month(year: int, month: int) -> tuple[datetime, datetime]:
    """(start, start of the next) of a UTC month: metering asks for every segment."""
    start = datetime(year, month, 1, tzinfo=timezone.utc)
    return start, (start.replace(year=year + 1, month=1) if month == 12 else start.replace(month=month + 1))


def month_start(t: datetime) -> datetime:
    if t.tzinfo is not timezone.utc:
        t = t.astimezone(timezone.utc)
    return _month(t.year, t.month)[0]


def next_month(t: datetime) -> datetime:
    if t.tzinfo is not timezone.utc:
        t = t.astimezone(timezone.utc)
    return _month(t.year, t.month)[1]


def segment_key(environment_id: str, kind: ResourceKind, model: str, start: datetime) -> str:
    suffix = f"/{model}" if model else ""
    return f"{environment_id}:{kind.value}{suffix}:{int(start.timestamp())}"


def timeline(readings: list[Reading], now: datetime) -> list[tuple[datetime, Reading, bool]]:
    """Ordered, deduplicated (second, reading, disk exists) steps, one per second (the last
    reading of each second holds from it), none after ``now``. Whether the disk exists
    follows every reading, also those a later one in the same second supersedes: a
    ``starting`` then a ``queued`` in one second leaves a disk behind."""
    unique = {(r.at, r.seq, r.status): r for r in readings}
    out: list[tuple[datetime, Reading, bool]] = []
    disk = False
    for r in sorted(unique.values(), key=lambda r: (r.at, r.seq)):
        at = second(r.at)
        if at > now:
            break
        disk = (disk or r.status in _DISK_CREATED) and r.status != DELETED
        if out and out[-1][0] == at:
            out[-1] = (at, r, disk)
        else:
            out.append((at, r, disk))
    return out


def segments_of(readings: list[Reading], prices: PriceBook, now: datetime, plans: "PlanCover | None" = None) -> list[Segment]:
    """Every usage segment of one environment's history up to ``now`` (see module doc);
    with ``plans``, GPU segments a plan covers are priced 0 (``plans.py``)."""
    now = second(now)
    steps = timeline(readings, now)
    if not steps:
        return []
    # Spans of constant holding per resource: (resource, quantity, start, end|None).
    spans: list[tuple[tuple[ResourceKind, str], int, datetime, datetime | None, Reading]] = []
    open_: dict[tuple[ResourceKind, str], tuple[int, datetime, Reading]] = {}
    for at, r, disk_exists in steps:
        held = r.held(disk_exists)
        for res, (qty, start, first) in list(open_.items()):
            if held.get(res) != qty:
                spans.append((res, qty, start, at, first))
                del open_[res]
        for res, qty in held.items():
            if res not in open_:
                open_[res] = (qty, at, r)
    for res, (qty, start, first) in open_.items():
        spans.append((res, qty, start, None, first))
    segments: list[Segment] = []
    for (kind, model), qty, start, end, first in spans:
        segments.extend(_split(first, kind, model, qty, start, end, prices, now, plans))
    return sorted(segments, key=lambda s: (s.start, s.kind.value, s.model))


def _split(r: Reading, kind: ResourceKind, model: str, qty: int, start: datetime, end: datetime | None,
           prices: PriceBook, now: datetime, plans: "PlanCover | None" = None) -> list[Segment]:
    """A span cut at price changes, month starts and plan boundaries (only those already
    reached by ``now``)."""
    limit = end if end is not None else now
    cuts = set(prices.changes(kind, model, start, limit))
    planned = plans is not None and kind is ResourceKind.GPU
    if planned:
        cuts.update(plans.cuts(r.workspace_id, model, start, limit))
    m = next_month(start)
    while m < limit:
        cuts.add(m)
        m = next_month(m)
    bounds = [start] + sorted(cuts)
    out = []
    for i, s in enumerate(bounds):
        e = bounds[i + 1] if i + 1 < len(bounds) else end
        price = prices.at(kind, model, s)
        price_id, unit_price = (price.id, price.unit_price) if price else (None, 0)
        if planned:
            plan = plans.cover(r.workspace_id, r.environment_id, model, qty, s)
            if plan is not None:
                price_id, unit_price = f"plan:{plan.id}", 0
                plans.note(r.workspace_id, model, r.environment_id, s, e, qty)
        out.append(Segment(
            key=segment_key(r.environment_id, kind, model, s), environment_id=r.environment_id,
            workspace_id=r.workspace_id, owner_id=r.owner_id, kind=kind, model=model, quantity=qty,
            start=s, end=e, price_id=price_id, unit_price=unit_price,
        ))
    return out


def open_compute(segments: list[Segment]) -> list[Segment]:
    return [s for s in segments if s.end is None and s.kind.compute]


from remotegpu.domain.billing.plans import PlanCover  # noqa: E402  (plans.py imports prices only)
