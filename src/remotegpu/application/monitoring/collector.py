"""The agent's metrics collector: reads GPUs and containers every interval and buffers
the samples until the agent sends them (with its heartbeat, over its link).

Samples travel as compact rows ``[ts, metric, value, env_id, gpu_uuid]``; the server
decides which environment and workspace a GPU's samples belong to (its allocations),
so the agent only says what it measured where. Container rates (CPU, network, disk)
come from the difference of two readings of cumulative counters.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from typing import Callable

from remotegpu.application.monitoring.ports import ContainerCounters, ContainerStats, GpuTelemetry
from remotegpu.domain.monitoring import metrics as m

log = logging.getLogger(__name__)

#: Rows kept while the server cannot be reached (oldest dropped beyond): ~10 minutes of
#: an 8-GPU host with 20 environments at 1 s.
MAX_BUFFERED_ROWS = 100_000
MIB = 1024 * 1024

Row = list  # [ts, metric, value, env_id, gpu_uuid]


class ContainerSources:
    """Several ``ContainerStats`` read as one (environments' runtime, the job runtime):
    one that fails is left out of that round, the others still count."""

    def __init__(self, *sources: ContainerStats | None) -> None:
        self.sources = [s for s in sources if s is not None]

    async def container_counters(self) -> list[ContainerCounters]:
        out: list[ContainerCounters] = []
        for source in self.sources:
            try:
                out.extend(await source.container_counters())
            except Exception:  # noqa: BLE001 - a broken runtime never stops the others' samples
                log.warning("reading container statistics failed", exc_info=True)
        return out


def container_sources(*candidates: object) -> ContainerSources | None:
    """The candidates that can report container counters (None: none can)."""
    found = [c for c in candidates if c is not None and hasattr(c, "container_counters")]
    return ContainerSources(*found) if found else None  # type: ignore[arg-type]


class MetricsCollector:
    def __init__(self, gpus: GpuTelemetry | None, containers: ContainerStats | None, *,
                 interval_seconds: float = m.DEFAULT_INTERVAL_SECONDS, clock: Callable[[], float] = time.time,
                 max_rows: int = MAX_BUFFERED_ROWS) -> None:
        if interval_seconds < m.MIN_INTERVAL_SECONDS:
            raise ValueError(f"metrics interval must be at least {m.MIN_INTERVAL_SECONDS} s")
        self.gpus = gpus
        self.containers = containers
        self.interval_seconds = interval_seconds
        self._clock = clock
        self._rows: deque[Row] = deque(maxlen=max_rows)
        self._previous: dict[str, ContainerCounters] = {}
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._rows)

    async def collect_once(self) -> int:
        """Read everything once; returns the number of rows added."""
        now = round(self._clock(), 3)
        rows: list[Row] = []
        if self.gpus is not None:
            try:
                for reading in self.gpus.telemetry():
                    for name, value in reading.values.items():
                        if name in m.METRICS and math.isfinite(value):
                            rows.append([now, name, float(value), "", reading.uuid])
            except Exception:  # noqa: BLE001 - a broken probe never stops the agent
                log.warning("reading GPU telemetry failed", exc_info=True)
        if self.containers is not None:
            try:
                counters = await self.containers.container_counters()
            except Exception:  # noqa: BLE001
                log.warning("reading container statistics failed", exc_info=True)
                counters = []
            seen = set()
            for c in counters:
                seen.add(c.env_id)
                rows.extend(self._container_rows(c, self._previous.get(c.env_id)))
                self._previous[c.env_id] = c
            for env_id in list(self._previous):
                if env_id not in seen:
                    del self._previous[env_id]
        if len(self._rows) + len(rows) > (self._rows.maxlen or 0):
            self.dropped += len(self._rows) + len(rows) - (self._rows.maxlen or 0)
        self._rows.extend(rows)
        return len(rows)

    @staticmethod
    def _container_rows(c: ContainerCounters, prev: ContainerCounters | None) -> list[Row]:
        ts = round(c.ts, 3)
        rows: list[Row] = [[ts, m.MEM_USED, c.memory_bytes / MIB, c.env_id, ""]]
        if c.memory_limit_bytes:
            rows.append([ts, m.MEM_LIMIT, c.memory_limit_bytes / MIB, c.env_id, ""])
        if prev is None or c.ts <= prev.ts:
            return rows  # rates need two readings
        dt = c.ts - prev.ts

        def rate(now: float, before: float) -> float:
            return max(0.0, (now - before) / dt)  # a restarted container's counters start again

        cores = rate(c.cpu_seconds, prev.cpu_seconds)
        rows.append([ts, m.CPU_CORES, cores, c.env_id, ""])
        if c.cpu_limit_cores > 0:
            rows.append([ts, m.CPU_PERCENT, 100.0 * cores / c.cpu_limit_cores, c.env_id, ""])
        rows += [
            [ts, m.NET_RX, rate(c.net_rx_bytes, prev.net_rx_bytes), c.env_id, ""],
            [ts, m.NET_TX, rate(c.net_tx_bytes, prev.net_tx_bytes), c.env_id, ""],
            [ts, m.DISK_READ, rate(c.disk_read_bytes, prev.disk_read_bytes), c.env_id, ""],
            [ts, m.DISK_WRITE, rate(c.disk_write_bytes, prev.disk_write_bytes), c.env_id, ""],
        ]
        return rows

    def drain(self, limit: int = 50_000) -> list[Row]:
        """Up to ``limit`` buffered rows, oldest first, removed from the buffer."""
        out = []
        while self._rows and len(out) < limit:
            out.append(self._rows.popleft())
        return out

    def put_back(self, rows: list[Row]) -> None:
        """Rows a failed send returns (kept ahead of newer ones, within the bound)."""
        room = (self._rows.maxlen or 0) - len(self._rows)
        keep = rows[-room:] if room > 0 else []
        self.dropped += len(rows) - len(keep)
        self._rows.extendleft(reversed(keep))
