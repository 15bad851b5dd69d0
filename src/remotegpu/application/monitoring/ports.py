"""Ports of the monitoring context."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

from remotegpu.domain.monitoring.metrics import Sample


@dataclass(frozen=True)
class SeriesFilter:
    """Which series a query sees: every given field must match (none given: the fleet)."""

    env_id: str | None = None
    host_id: str | None = None
    workspace_id: str | None = None
    gpu_uuid: str | None = None


@dataclass(frozen=True)
class Point:
    t: float  # start of the step
    avg: float
    min: float
    max: float
    count: int


@dataclass(frozen=True)
class Series:
    metric: str
    host_id: str
    env_id: str
    workspace_id: str
    gpu_uuid: str
    points: list[Point] = field(default_factory=list)


class MetricsStore(Protocol):
    """Where samples go and how history comes back.

    The embedded store keeps them in the database (raw, then 1-minute and 1-hour
    aggregates); the Prometheus store reads what Prometheus scraped from ``/metrics``.
    """

    async def write(self, samples: Sequence[Sample]) -> None: ...

    async def latest(self, flt: SeriesFilter, *, since: float, metrics: Sequence[str] | None = None) -> list[Sample]:
        """The newest sample of each series in ``flt`` not older than ``since``."""
        ...

    async def history(self, flt: SeriesFilter, metric: str, start: float, end: float, step: int, *,
                      now: float) -> list[Series]:
        """Points every ``step`` seconds over ``[start, end)``: avg/min/max of the samples
        in each step (from the finest resolution still kept for ``start``)."""
        ...

    async def compact(self, now: float) -> None:
        """Roll finished buckets up and drop what is past retention (idempotent)."""
        ...


# --- the agent's side ---------------------------------------------------------------------


@dataclass(frozen=True)
class GpuReading:
    """One GPU's fields (DCGM names → values) read now."""

    uuid: str
    values: dict[str, float]


class GpuTelemetry(Protocol):
    def telemetry(self) -> list[GpuReading]:
        """Every readable GPU's fields now; never raises (an unreadable field is absent)."""
        ...


@dataclass(frozen=True)
class ContainerCounters:
    """Cumulative counters of one environment's container, read at ``ts`` (seconds)."""

    env_id: str
    ts: float
    cpu_seconds: float  # CPU time used since the container started
    cpu_limit_cores: float  # its limit (0: none → the host's cores)
    memory_bytes: int
    memory_limit_bytes: int
    net_rx_bytes: int
    net_tx_bytes: int
    disk_read_bytes: int
    disk_write_bytes: int


class ContainerStats(Protocol):
    async def container_counters(self) -> list[ContainerCounters]:
        """Counters of every running environment container; never raises for one container."""
        ...
