"""MetricsStore whose history comes from Prometheus (REMOTEGPU_METRICS_STORE=prometheus).

Prometheus scrapes every server's ``/metrics`` (per-environment / per-GPU gauges with
the labels ``environment``, ``workspace``, ``host``, ``gpu_uuid``) and keeps the
history; range queries go to its HTTP API (``/api/v1/query_range``: avg/min/max/count
``_over_time`` per step). Latest values — what ``/metrics`` exposes and the alert
rules read — stay in the inner store (the database, raw samples only for a short
while: set REMOTEGPU_METRICS_RAW_RETENTION_HOURS low), so every replica exposes the same.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import aiohttp

from remotegpu.application.monitoring.ports import MetricsStore, Point, Series, SeriesFilter
from remotegpu.domain.monitoring.metrics import METRICS, Sample

_LABEL_VALUE = re.compile(r'^[^"\\\n]*$')
_FUNCS = ("avg", "min", "max", "count")


class PrometheusError(Exception):
    pass


def selector(metric: str, flt: SeriesFilter) -> str:
    """``metric{environment="…",…}`` for a filter (values are ids: quoted, checked)."""
    if metric not in METRICS:
        raise ValueError(metric)
    matchers = []
    for label, value in (("environment", flt.env_id), ("host", flt.host_id), ("workspace", flt.workspace_id),
                         ("gpu_uuid", flt.gpu_uuid)):
        if value is not None:
            if not _LABEL_VALUE.match(value):
                raise ValueError(f"bad label value {value!r}")
            matchers.append(f'{label}="{value}"')
    return f"{metric}{{{','.join(matchers)}}}"


class PrometheusMetricsStore:
    def __init__(self, url: str, inner: MetricsStore | None = None, *, timeout: float = 10.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError("REMOTEGPU_METRICS_PROMETHEUS_URL must be an http(s) URL")
        self.url = url.rstrip("/")
        self.inner = inner
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def write(self, samples: Sequence[Sample]) -> None:
        if self.inner is not None:
            await self.inner.write(samples)

    async def latest(self, flt: SeriesFilter, *, since: float, metrics: Sequence[str] | None = None) -> list[Sample]:
        return [] if self.inner is None else await self.inner.latest(flt, since=since, metrics=metrics)

    async def compact(self, now: float) -> None:
        if self.inner is not None:
            await self.inner.compact(now)

    async def query(self, expr: str, *, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        return await self._get("/api/v1/query", params)

    async def _get(self, path: str, params: dict[str, str]) -> list[dict[str, Any]]:
        async with aiohttp.ClientSession(timeout=self._timeout) as session:
            async with session.get(self.url + path, params=params) as r:
                body = await r.json(content_type=None)
        if r.status != 200 or body.get("status") != "success":
            raise PrometheusError(f"{path} {params.get('query')}: {r.status} {str(body)[:300]}")
        return body["data"]["result"]

    async def history(self, flt: SeriesFilter, metric: str, start: float, end: float, step: int, *,
                      now: float) -> list[Series]:
        sel = selector(metric, flt)
        # Each evaluation at t covers (t - step, t]: evaluate at the end of every step.
        params = {"start": f"{start + step:.3f}", "end": f"{end:.3f}", "step": str(step)}
        results = {}
        for func in _FUNCS:
            results[func] = await self._get("/api/v1/query_range",
                                            {**params, "query": f"{func}_over_time({sel}[{step}s])"})
        series: dict[tuple, dict[float, dict[str, float]]] = {}
        labels_of: dict[tuple, dict[str, str]] = {}
        for func, items in results.items():
            for item in items:
                lab = item["metric"]
                key = (lab.get("host", ""), lab.get("environment", ""), lab.get("gpu_uuid", ""))
                labels_of[key] = lab
                for ts, value in item["values"]:
                    series.setdefault(key, {}).setdefault(float(ts) - step, {})[func] = float(value)
        out = []
        for key in sorted(series):
            lab = labels_of[key]
            s = Series(metric, key[0], key[1], lab.get("workspace", ""), key[2])
            for t in sorted(series[key]):
                v = series[key][t]
                if len(v) == len(_FUNCS):
                    s.points.append(Point(t, v["avg"], v["min"], v["max"], int(v["count"])))
            out.append(s)
        return out
