"""The ``desktop`` app of an environment: its remote desktop in the browser.

Served on the environment's own app host, ``{env_id}--desktop.{apps_domain}`` (the
handshake, cookies, origin checks and per-request admission are ``apps.py``'s, exactly
as for JupyterLab):

* ``/`` — the viewer page (``desktop.html`` from the console's build: guacamole-common-js,
  with the clipboard, scale-to-fit on resize and the keyboard);
* ``/assets/…`` — its scripts and styles (the console's immutable build output);
* ``/_remotegpu/tunnel`` — the Guacamole protocol over a websocket (subprotocol
  ``guacamole``, as guacamole-common-js's ``WebSocketTunnel`` speaks it): the platform
  connects to guacd (``REMOTEGPU_GUACD_ADDRESS``), which connects to the container's VNC
  server on its host's private address with the environment's VNC password. The browser
  never sees that address nor the password. Admission is re-checked every
  ``live_recheck_seconds``: a removed member's desktop closes within seconds.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Awaitable, Callable

from aiohttp import WSCloseCode, WSMsgType, web

from remotegpu.adapters.access.guacd import GuacdError, connect_vnc, encode
from remotegpu.application.environments.entry import Upstream
from remotegpu.domain.environments.models import vnc_password
from remotegpu.entrypoints.http.console import DIST_KEY
from remotegpu.entrypoints.http.errors import error_response
from remotegpu.entrypoints.http.keys import CONTAINER
from remotegpu.entrypoints.http.session import is_websocket_upgrade

log = logging.getLogger("remotegpu.desktop")

TUNNEL_PATH = "/_remotegpu/tunnel"
PAGE = "desktop.html"
_IMMUTABLE = "public, max-age=31536000, immutable"
#: The viewer page may not be framed (it takes the keyboard); it loads only its own origin's
#: scripts and talks only to its own origin (the tunnel).
_PAGE_HEADERS = {
    "Cache-Control": "no-cache", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
                               "connect-src 'self' ws: wss:; frame-ancestors 'none'",
}
#: Guacamole status codes the browser's client shows (Guacamole.Status.Code).
UPSTREAM_NOT_FOUND = "519"
UPSTREAM_ERROR = "514"
CLIENT_BAD_REQUEST = "768"
CLIENT_FORBIDDEN = "771"


def _guacd_address(request: web.Request) -> tuple[str, int]:
    address = request.app[CONTAINER].settings().guacd_address
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port or 4822)


def _int(value: str | None, default: int, low: int, high: int) -> int:
    try:
        return max(low, min(high, int(value or default)))
    except ValueError:
        return default


async def serve(request: web.Request, upstream: Upstream,
                still_admitted: Callable[[], Awaitable[bool]]) -> web.StreamResponse:
    """Answer a request on a desktop app host whose user was admitted (``apps.py``)."""
    path = request.path
    if path == TUNNEL_PATH:
        if not is_websocket_upgrade(request):
            return error_response(400, "websocket_required", "the desktop tunnel is a websocket")
        return await _tunnel(request, upstream, still_admitted)
    if request.method not in ("GET", "HEAD"):
        return error_response(405, "method_not_allowed", "the desktop page is read-only")
    dist = request.app[DIST_KEY]
    if path.startswith("/assets/"):
        root = (dist / "assets").resolve()
        target = (root / path[len("/assets/"):]).resolve()
        if root not in target.parents or not target.is_file():
            return error_response(404, "not_found", "no such file")
        return web.FileResponse(target, headers={"Cache-Control": _IMMUTABLE})
    if path in ("/", "/index.html", "/desktop.html"):
        page = dist / PAGE
        if not page.is_file():
            return error_response(503, "console_not_built", "the console (with its desktop page) is not built on this server")
        return web.FileResponse(page, headers={**_PAGE_HEADERS, "Content-Type": "text/html; charset=utf-8"})
    return error_response(404, "not_found", "no such page")


async def _tunnel(request: web.Request, upstream: Upstream,
                  still_admitted: Callable[[], Awaitable[bool]]) -> web.StreamResponse:
    ws = web.WebSocketResponse(protocols=("guacamole",), max_msg_size=4 * 1024 * 1024, heartbeat=30)
    await ws.prepare(request)
    q = request.query
    width, height = _int(q.get("width"), 1280, 64, 8192), _int(q.get("height"), 800, 64, 8192)
    dpi = _int(q.get("dpi"), 96, 48, 480)
    guacd_host, guacd_port = _guacd_address(request)
    try:
        conn = await connect_vnc(
            guacd_host, guacd_port, hostname=upstream.address, port=upstream.port,
            password=vnc_password(upstream.jupyter_token), width=width, height=height, dpi=dpi,
            timezone=q.get("timezone", "")[:64],
        )
    except GuacdError as e:
        log.warning("desktop of %s: %s", upstream.env_id, e)
        await ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=UPSTREAM_NOT_FOUND.encode())
        return ws
    entry = request.app[CONTAINER].environment_entry()
    interval = request.app[CONTAINER].settings().live_recheck_seconds
    revoked = False
    # The first instruction: the tunnel's id (guacamole-common-js opens on it).
    await ws.send_str(encode("", str(uuid.uuid4())))

    async def downstream() -> None:  # guacd → browser, whole instructions per message
        while True:
            text = await conn.read_instructions()
            if text is None:
                return
            await ws.send_str(text)

    async def upstream_pump() -> None:  # browser → guacd
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                break
            data = msg.data
            if data.startswith("0.,"):  # the tunnel's own ("internal") instructions: pings
                if data.startswith("0.,4.ping,"):
                    await ws.send_str(data)
                continue
            await conn.send(data)
            await entry.record_activity(upstream.env_id)

    async def watch() -> None:
        nonlocal revoked
        while True:
            await asyncio.sleep(interval)
            if not await still_admitted():
                revoked = True
                return

    tasks = [asyncio.ensure_future(downstream()), asyncio.ensure_future(upstream_pump()), asyncio.ensure_future(watch())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await conn.close()
        if revoked:
            log.info("desktop of %s closed: access revoked", upstream.env_id)
            await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=CLIENT_FORBIDDEN.encode())
        else:
            await ws.close()
    return ws
