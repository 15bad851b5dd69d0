"""Web terminal: ``GET /api/v1/environments/{id}/terminal`` upgraded to a websocket.

The upgrade request itself is authorised (session cookie or Bearer; the session
middleware checks its Origin); only people who may enter the environment get a shell,
others 404. Frames:

* client → server: binary frames are keystrokes; a text frame holding a JSON object
  with ``type`` is a control message — ``{"type": "resize", "cols": 120, "rows": 40}``
  or ``{"type": "input", "data": "ls\\r"}``; any other text frame is keystrokes too.
* server → client: terminal output as text frames (UTF-8, decoded incrementally).

The socket closes with code 1000 (``terminal session ended``) when the shell exits,
with 1001 (going away, ``environment stopped``) when the environment is stopped,
restarted or deleted — within the seconds its container takes to stop — and with 1008
(``access revoked``) within ``live_recheck_seconds`` once what opened it no longer
holds: the account disabled, the token revoked, the user no longer allowed to enter
(``liveness.py``). The shell
comes from ``docker exec`` for environments on this machine's embedded Docker host,
from an SSH session with the environment's own key for every other host (``TerminalRouter``);
an environment neither reaches answers 409 ``terminal_unavailable``.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import logging

from aiohttp import WSCloseCode, WSMsgType, web

from remotegpu.application.environments.ports import EnvironmentRuntimeError
from remotegpu.domain.shared.errors import Conflict
from remotegpu.entrypoints.http.liveness import AdmissionCheck
from remotegpu.entrypoints.http.errors import error_response
from remotegpu.entrypoints.http.handlers import api
from remotegpu.entrypoints.http.local_host import terminal_router
from remotegpu.entrypoints.http.routing import Call
from remotegpu.entrypoints.http.session import is_websocket_upgrade

log = logging.getLogger("remotegpu.terminal")


@api.get("/api/v1/environments/{environment_id}/terminal", tags=["environments"], errors=[401, 403, 404, 409, 426])
async def open_terminal(call: Call) -> web.StreamResponse:
    """Websocket: a shell with a pty in the running environment (input, output, resize)."""
    request = call.request
    entry = call.container.environment_entry()
    env, host, ports = await entry.load_enterable(call.user, call.path("environment_id"))
    if not is_websocket_upgrade(request):
        return error_response(426, "upgrade_required", "open this path as a websocket", headers={"Upgrade": "websocket"})
    if host is None:
        raise Conflict("the environment has no host", code="terminal_unavailable")
    cols, rows = _size(request.query.get("cols"), 80), _size(request.query.get("rows"), 24)
    try:
        session = await terminal_router(request.app).open(await entry.ssh_target(env, host, ports), cols=cols, rows=rows)
    except EnvironmentRuntimeError as exc:
        raise Conflict(str(exc), code="not_running") from None
    ws = web.WebSocketResponse(heartbeat=30, max_msg_size=1024 * 1024)
    try:
        await ws.prepare(request)
        await entry.record_activity(env.id)
        user, env_id = call.user, env.id

        async def may_still_enter() -> bool:
            try:
                await entry.load_enterable(user, env_id)
            except Conflict:  # stopped: the shell ends by itself, with its own reason
                pass
            return True  # (NotFound: no longer allowed in — AdmissionCheck says False)

        check = AdmissionCheck(request, extra=may_still_enter)
        await _bridge(ws, session, lambda: entry.record_activity(env.id), ended=lambda: _why_ended(entry, env.id),
                      revoked=check.until_revoked)
    finally:
        await session.close()
    return ws


async def _why_ended(entry, env_id: str) -> tuple[int, bytes]:
    """The close code and message once the shell's output ended."""
    try:
        running = await entry.still_running(env_id)
    except Exception:  # noqa: BLE001 - the socket still closes, with the generic reason
        log.warning("could not tell why the terminal of %s ended", env_id, exc_info=True)
        running = True
    if running:
        return WSCloseCode.OK, b"terminal session ended"
    return WSCloseCode.GOING_AWAY, b"environment stopped"


async def _bridge(ws: web.WebSocketResponse, session, touch, *, ended=None, revoked=None) -> None:
    """Pump output to the socket and keystrokes to the session until either side ends.
    ``ended`` (async, optional) gives the close code and message when the session's
    output ended first; otherwise 1000 ``terminal session ended``. ``revoked`` (async,
    optional) returns once the user's access was revoked: 1008 ``access revoked``."""
    async def output() -> None:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        while True:
            data = await session.read()
            if not data:
                break
            text = decoder.decode(data)
            if text:
                await ws.send_str(text)

    async def keystrokes() -> None:
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                await session.write(msg.data)
            elif msg.type == WSMsgType.TEXT:
                control = _control(msg.data)
                if control is None:
                    await session.write(msg.data.encode())
                elif control.get("type") == "resize":
                    await session.resize(_size(control.get("cols"), 80), _size(control.get("rows"), 24))
                elif control.get("type") == "input" and isinstance(control.get("data"), str):
                    await session.write(control["data"].encode())
            else:
                break
            await touch()

    out, keys = asyncio.ensure_future(output()), asyncio.ensure_future(keystrokes())
    watch = asyncio.ensure_future(revoked() if revoked is not None else asyncio.Event().wait())
    try:
        done, _ = await asyncio.wait([out, keys, watch], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (out, keys, watch):
            task.cancel()
        await asyncio.gather(out, keys, watch, return_exceptions=True)
    if not ws.closed:
        code, message = WSCloseCode.OK, b"terminal session ended"
        if watch in done and not watch.cancelled() and watch.exception() is None:
            log.info("terminal closed: access revoked")
            code, message = WSCloseCode.POLICY_VIOLATION, b"access revoked"
        elif ended is not None and out in done:
            code, message = await ended()
        await ws.close(code=code, message=message)


def _control(text: str) -> dict | None:
    if not text.startswith("{"):
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: absurdly nested, not a control message
        return None
    return value if isinstance(value, dict) and "type" in value else None


def _size(value, default: int) -> int:
    try:
        return max(1, min(int(value), 1000))
    except (TypeError, ValueError):
        return default
