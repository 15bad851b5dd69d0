"""Serve the built web console (``src/remotegpu/entrypoints/console/dist``) at ``/``.

Hashed files under ``/assets/`` are immutable and cached for a year; ``index.html`` is
answered with ``no-cache`` for ``/`` and for every other GET path that is not the API or an
operational endpoint, so that vue-router's history mode works on reload.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from aiohttp import web

DEFAULT_DIST = Path(__file__).resolve().parent.parent / "console" / "dist"
DIST_KEY: web.AppKey[Path] = web.AppKey("console_dist", Path)

_RESERVED_PREFIXES = ("/api/",)
_RESERVED_EXACT = {"/api", "/healthz", "/readyz", "/metrics"}
_IMMUTABLE = "public, max-age=31536000, immutable"
#: No other origin (an environment's app host above all) may frame the console.
_NO_FRAMING = {"X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'"}

_NOT_BUILT = """<!doctype html><html><head><meta charset="utf-8"><title>RemoteGPU</title>
<style>body{font-family:system-ui,sans-serif;max-width:640px;margin:4rem auto;padding:0 1rem;color:#1f2937}
code{background:#f3f4f6;padding:.1em .4em;border-radius:4px}</style></head><body>
<h1>RemoteGPU</h1><p>The web console has not been built on this server.</p>
<p>Build it with <code>make console</code> (or <code>cd src/remotegpu/entrypoints/console &amp;&amp; npm ci &amp;&amp; npm run build</code>)
and reload this page.</p><p>The API is running: <a href="/api/docs">/api/docs</a>.</p></body></html>"""


def _is_reserved(path: str) -> bool:
    return path in _RESERVED_EXACT or path.startswith(_RESERVED_PREFIXES)


async def _index(request: web.Request) -> web.StreamResponse:
    dist = request.app[DIST_KEY]
    index = dist / "index.html"
    if not index.is_file():
        return web.Response(text=_NOT_BUILT, content_type="text/html", headers={"Cache-Control": "no-cache", **_NO_FRAMING})
    return web.FileResponse(index, headers={"Cache-Control": "no-cache", "Content-Type": "text/html; charset=utf-8", **_NO_FRAMING})


async def _asset(request: web.Request) -> web.StreamResponse:
    root = (request.app[DIST_KEY] / "assets").resolve()
    target = (root / request.match_info["name"]).resolve()
    if root not in target.parents or not target.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(target, headers={"Cache-Control": _IMMUTABLE})


async def _fallback(request: web.Request) -> web.StreamResponse:
    path = request.path
    if _is_reserved(path):
        raise web.HTTPNotFound()
    # A top-level public file (favicon.svg, robots.txt …) is served as is; everything else is the SPA.
    dist = request.app[DIST_KEY]
    name = path.lstrip("/")
    if name and "/" not in name and not name.startswith("."):
        candidate = dist / name
        if candidate.is_file() and candidate.name != "index.html":
            ctype = mimetypes.guess_type(candidate.name)[0] or "application/octet-stream"
            return web.FileResponse(candidate, headers={"Cache-Control": "public, max-age=3600", "Content-Type": ctype})
    return await _index(request)


@web.middleware
async def _spa_middleware(request: web.Request, handler):
    """GET paths no route knows (and that are not the API or ops) get the console's index.html.

    A middleware rather than a catch-all route, so that routes registered after ``install``
    (the proxy, new API modules) are never shadowed.
    """
    if request.method in ("GET", "HEAD") and isinstance(request.match_info.http_exception, web.HTTPNotFound):
        if not _is_reserved(request.path):
            return await _fallback(request)
    return await handler(request)


def install(app: web.Application, dist_dir: Path = DEFAULT_DIST) -> None:
    """Serve the console: ``/``, ``/assets/*`` and index.html for unknown non-API GET paths."""
    app[DIST_KEY] = Path(dist_dir)
    app.router.add_get("/", _index)
    app.router.add_get("/assets/{name:.+}", _asset)
    app.middlewares.append(_spa_middleware)
