"""Effective-dated prices.

A price is ``unit_price`` minor units per unit of a resource per period: per GPU-hour of
one model, per CPU core-hour, per GiB-hour of memory, per GiB-day of disk, per hour of
"no-GPU mode". A new price applies from its ``effective_from``; usage before it keeps the
price that was in force then (metering splits a segment at a price change).
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from remotegpu.domain.shared.errors import InvalidInput


class ResourceKind(str, Enum):
    GPU = "gpu"  # per GPU-hour; the price is per model
    CPU = "cpu"  # per core-hour
    MEMORY = "memory"  # per GiB-hour
    DISK = "disk"  # per GiB-day, also while stopped
    NOGPU = "nogpu"  # per hour of an environment started without its GPUs (one flat line)
    # Plans (prepaid, never metered): the price of one GPU of a model for a month / a year.
    GPU_MONTH = "gpu_month"
    GPU_YEAR = "gpu_year"

    @property
    def period_seconds(self) -> int:
        return 86400 if self is ResourceKind.DISK else 3600

    @property
    def compute(self) -> bool:
        return self in (ResourceKind.GPU, ResourceKind.CPU, ResourceKind.MEMORY, ResourceKind.NOGPU)

    @property
    def per_model(self) -> bool:
        return self in (ResourceKind.GPU, ResourceKind.GPU_MONTH, ResourceKind.GPU_YEAR)


@dataclass(frozen=True)
class Price:
    id: str
    kind: ResourceKind
    model: str  # the GPU model for GPU prices, "" otherwise
    unit_price: int  # minor units per unit per period
    effective_from: datetime
    created_by: str = ""

    def __post_init__(self) -> None:
        if self.unit_price < 0:
            raise InvalidInput("a price cannot be negative", details={"field": "unit_price"})
        if self.kind.per_model != bool(self.model):
            raise InvalidInput("a GPU price names its model; other prices do not", details={"field": "model"})


class PriceBook:
    """Every price ever set; ``at`` answers the one in force at an instant."""

    def __init__(self, prices: list[Price]):
        self._by: dict[tuple[ResourceKind, str], list[Price]] = {}
        for p in sorted(prices, key=lambda p: (p.effective_from, p.id)):
            self._by.setdefault((p.kind, p.model), []).append(p)
        self._starts = {k: [p.effective_from for p in v] for k, v in self._by.items()}

    def at(self, kind: ResourceKind, model: str, when: datetime) -> Price | None:
        """The price in force at ``when`` (None: never priced then → free)."""
        key = (kind, model if kind.per_model else "")
        i = bisect_right(self._starts.get(key, []), when)
        return self._by[key][i - 1] if i else None

    def changes(self, kind: ResourceKind, model: str, after: datetime, before: datetime) -> list[datetime]:
        """Instants in ``(after, before)`` at which the price of this resource changes."""
        key = (kind, model if kind.per_model else "")
        return [t for t in self._starts.get(key, []) if after < t < before]

    def current(self, now: datetime) -> list[Price]:
        """The price in force now of every priced resource."""
        return [p for k in self._by if (p := self.at(k[0], k[1], now)) is not None]

    def all(self) -> list[Price]:
        return [p for v in self._by.values() for p in v]

    def hourly(self, now: datetime, *, gpu_model: str | None, gpu_count: int, cpu_cores: int, memory_gib: int,
               disk_gib: int = 0) -> int:
        """Minor units one hour of such an environment costs now (disk: 1/24 of a day), rounded once."""
        parts = [(ResourceKind.CPU, "", cpu_cores), (ResourceKind.MEMORY, "", memory_gib)]
        if gpu_count and gpu_model:
            parts.append((ResourceKind.GPU, gpu_model, gpu_count))
        total = 0  # in 1/86400 minor units of an hour: exact, rounded at the end
        for kind, model, qty in parts + [(ResourceKind.DISK, "", disk_gib)]:
            price = self.at(kind, model, now)
            if price is not None and qty:
                total += qty * price.unit_price * 3600 * (86400 // kind.period_seconds)
        return (2 * total + 86400) // (2 * 86400)
