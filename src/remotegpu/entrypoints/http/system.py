"""Operational endpoints: health, readiness, metrics, the OpenAPI document and its docs page.

``/metrics`` is not public (route names, request counts and latencies tell an outsider
what runs here and when): it answers ``Authorization: Bearer <REMOTEGPU_METRICS_TOKEN>``
(what Prometheus' scrape config sends), or a platform admin's access token, API token or
console session. Anyone else gets 401 (no credential) or 403.
"""

from __future__ import annotations

import functools
import hmac
import json
from typing import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from remotegpu.domain.shared.errors import PermissionDenied, Unauthenticated
from remotegpu.entrypoints.http.errors import error_response
from remotegpu.entrypoints.http.keys import CONTAINER, PRINCIPAL

METRICS_KEY: web.AppKey = web.AppKey("http_metrics")
# The spec is built on its first request, not with the app: building it walks every
# model's JSON schema (~0.2 s), which every test's app and every replica paid at start.
SPEC_KEY: web.AppKey[Callable[[], bytes]] = web.AppKey("openapi_spec")

_DOCS = """<!doctype html><html><head><meta charset="utf-8"><title>RemoteGPU API</title>
<style>body{font-family:system-ui,sans-serif;max-width:1000px;margin:2rem auto;padding:0 1rem}
code{background:#f3f3f3;padding:0 .3em}.op{border-top:1px solid #ddd;padding:.5rem 0}
.m{display:inline-block;min-width:4.5em;font-weight:bold}</style></head><body>
<h1>RemoteGPU API</h1><p>Machine-readable: <a href="/api/openapi.json">/api/openapi.json</a> (OpenAPI 3.1).</p>
<div id="ops">Loading…</div><script>
fetch('/api/openapi.json').then(r=>r.json()).then(s=>{const out=[];
for(const [p,ops] of Object.entries(s.paths)){for(const [m,o] of Object.entries(ops)){
out.push(`<div class="op"><span class="m">${m.toUpperCase()}</span><code>${p}</code> — ${o.summary}
${o.security?' 🔒':''} <small>[${(o.tags||[]).join(', ')}] → ${Object.keys(o.responses).join(', ')}</small></div>`)}}
document.getElementById('ops').innerHTML=out.join('')});</script></body></html>"""


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    ok = await request.app[CONTAINER].readiness().check()
    if not ok:
        return error_response(503, "not_ready", "database is not reachable")
    return web.json_response({"status": "ready", "database": "ok"})


async def _check_metrics_reader(request: web.Request) -> None:
    container = request.app[CONTAINER]
    principal = request.get(PRINCIPAL)  # a console session (the session middleware)
    header = request.headers.get("Authorization", "")
    scheme, _, credentials = header.partition(" ")
    credentials = credentials.strip()
    if header:
        if scheme.lower() != "bearer" or not credentials:
            raise Unauthenticated("Authorization header must be 'Bearer <token>'")
        wanted = container.settings().metrics_token
        if wanted and hmac.compare_digest(credentials.encode(), wanted.encode()):
            return
        principal = await container.auth_service().authenticate(credentials)  # Unauthenticated if not a token
    if principal is None:
        raise Unauthenticated("metrics need 'Authorization: Bearer <REMOTEGPU_METRICS_TOKEN>' or an admin's credentials")
    if not principal.user.is_admin:
        raise PermissionDenied("only platform admins (or the metrics token) may read metrics", code="admin_required")


async def metrics(request: web.Request) -> web.Response:
    await _check_metrics_reader(request)
    body = generate_latest(request.app[METRICS_KEY].registry)
    body += exposition(await request.app[CONTAINER].metrics_service().fleet_latest())
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def exposition(samples) -> bytes:
    """Per-environment / per-GPU gauges in Prometheus' text format, labelled
    ``environment``, ``workspace``, ``host``, ``gpu_uuid`` ("" when not applicable)."""
    from remotegpu.domain.monitoring.metrics import METRICS

    by_metric: dict[str, list] = {}
    for s in samples:
        by_metric.setdefault(s.metric, []).append(s)
    lines = []
    for name in sorted(by_metric):
        info = METRICS.get(name)
        lines.append(f"# HELP {name} {info.help if info else name} ({info.unit if info else ''})")
        lines.append(f"# TYPE {name} gauge")
        for s in by_metric[name]:
            labels = (f'environment="{_label(s.env_id)}",workspace="{_label(s.workspace_id)}",'
                      f'host="{_label(s.host_id)}",gpu_uuid="{_label(s.gpu_uuid)}"')
            lines.append(f"{name}{{{labels}}} {repr(float(s.value))}")
    return ("\n".join(lines) + "\n").encode() if lines else b""


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[SPEC_KEY](), content_type="application/json")


async def docs(request: web.Request) -> web.Response:
    return web.Response(text=_DOCS, content_type="text/html")


def install(app: web.Application, build_spec: Callable[[], dict]) -> None:
    app[SPEC_KEY] = functools.cache(lambda: json.dumps(build_spec()).encode())
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/openapi.json", openapi)
    app.router.add_get("/api/docs", docs)
