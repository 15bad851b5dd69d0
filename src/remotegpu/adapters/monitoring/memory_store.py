"""MetricsStore in memory (tests, ``persistence=memory``): raw samples only, same answers."""

from __future__ import annotations

import math
from typing import Sequence

from remotegpu.application.monitoring.ports import Point, Series, SeriesFilter
from remotegpu.domain.monitoring.metrics import Retention, Sample


def _matches(s: Sample, flt: SeriesFilter) -> bool:
    return ((flt.env_id is None or s.env_id == flt.env_id) and (flt.host_id is None or s.host_id == flt.host_id)
            and (flt.workspace_id is None or s.workspace_id == flt.workspace_id)
            and (flt.gpu_uuid is None or s.gpu_uuid == flt.gpu_uuid))


class InMemoryMetricsStore:
    def __init__(self, *, retention: Retention | None = None) -> None:
        self.samples: list[Sample] = []
        self.retention = retention or Retention()

    async def write(self, samples: Sequence[Sample]) -> None:
        self.samples.extend(samples)

    async def latest(self, flt: SeriesFilter, *, since: float, metrics: Sequence[str] | None = None) -> list[Sample]:
        newest: dict[tuple, Sample] = {}
        for s in self.samples:
            if s.ts >= since and _matches(s, flt) and (not metrics or s.metric in metrics):
                if s.series not in newest or newest[s.series].ts <= s.ts:
                    newest[s.series] = s
        return [newest[k] for k in sorted(newest)]

    async def history(self, flt: SeriesFilter, metric: str, start: float, end: float, step: int, *,
                      now: float) -> list[Series]:
        groups: dict[tuple, dict[int, list[float]]] = {}
        workspaces: dict[tuple, str] = {}
        for s in self.samples:
            if s.metric == metric and start <= s.ts < end and _matches(s, flt):
                key = (s.host_id, s.env_id, s.gpu_uuid)
                groups.setdefault(key, {}).setdefault(int((s.ts - start) // step), []).append(s.value)
                workspaces[key] = s.workspace_id or workspaces.get(key, "")
        out = []
        for key in sorted(groups):
            series = Series(metric, key[0], key[1], workspaces[key], key[2])
            for k in sorted(groups[key]):
                vals = groups[key][k]
                series.points.append(Point(start + k * step, math.fsum(vals) / len(vals), min(vals), max(vals), len(vals)))
            out.append(series)
        return out

    async def compact(self, now: float) -> None:
        self.samples = [s for s in self.samples if s.ts >= now - self.retention.raw_seconds]
