"""Server-sent events: ``GET /api/v1/events/stream`` pushes environment changes.

The console opens one ``EventSource`` (the session cookie authenticates it) instead
of polling. Each change the caller may see arrives as::

    event: environment
    data: {"type": "environment", "environment": {...as GET /api/v1/environments/{id}}}

A comment line every ``PING_SECONDS`` keeps proxies from closing an idle stream. The
server ends a stream after ``MAX_STREAM_SECONDS`` (the browser reconnects by itself,
re-authenticated), when the subscriber fell behind (the console re-reads the list
on every reconnect, so nothing is lost), and within ``live_recheck_seconds`` of what
opened it no longer holding (the account disabled, the token revoked: ``liveness.py``).

A user may hold at most ``max_event_streams_per_user`` streams at once (per server
process); one more answers 429 ``too_many_streams``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from aiohttp import web

from remotegpu.application.shared.change_feed import FeedOverflow
from remotegpu.entrypoints.http.errors import error_response
from remotegpu.entrypoints.http.handlers import api
from remotegpu.entrypoints.http.handlers.environments import env_out
from remotegpu.entrypoints.http.liveness import AdmissionCheck
from remotegpu.entrypoints.http.handlers.notifications import UNREAD, UnreadPush
from remotegpu.entrypoints.http.routing import Call

log = logging.getLogger("remotegpu.events")

PING_SECONDS = 15.0
MAX_STREAM_SECONDS = 15 * 60
RETRY_MS = 3000
#: Set on shutdown so open streams end at once instead of holding the server up.
SHUTDOWN = web.AppKey("event_streams_shutdown", asyncio.Event)
#: user id → how many streams that user has open in this process.
OPEN_STREAMS: web.AppKey[dict[str, int]] = web.AppKey("event_streams_open", dict)


@api.get("/api/v1/events/stream", tags=["events"], errors=[401, 429])
async def event_stream(call: Call) -> web.StreamResponse:
    """text/event-stream of changes to the environments of the caller's workspaces."""
    request = call.request
    user_id = call.user.id
    open_streams = request.app[OPEN_STREAMS]
    limit = call.container.settings().max_event_streams_per_user
    if open_streams.get(user_id, 0) >= limit:
        return error_response(429, "too_many_streams", f"at most {limit} event streams at once per user",
                              details={"limit": limit})
    open_streams[user_id] = open_streams.get(user_id, 0) + 1
    try:
        return await _stream(call)
    finally:
        open_streams[user_id] -= 1
        if open_streams[user_id] <= 0:
            del open_streams[user_id]


async def _stream(call: Call) -> web.StreamResponse:
    request = call.request
    check = AdmissionCheck(request)
    recheck_seconds = check.interval
    subscription, watcher = call.container.environment_watch().subscribe(call.user)
    unread = UnreadPush(call)  # also: event "notifications" with the unread count
    subscription = unread.wrap(subscription)
    shutdown = request.app.get(SHUTDOWN) or asyncio.Event()
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream; charset=utf-8",
        "Cache-Control": "no-cache, no-store",
        "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
    })
    try:
        await response.prepare(request)
        await watcher.prime()
        await response.write(f"retry: {RETRY_MS}\n: connected\n\n".encode())
        await response.write(await unread.frame())
        deadline = time.monotonic() + MAX_STREAM_SECONDS
        recheck_at = time.monotonic() + recheck_seconds
        ping_at = time.monotonic() + PING_SECONDS
        while not shutdown.is_set() and time.monotonic() < deadline:
            if request.transport is None or request.transport.is_closing():
                break  # the browser went away (its place under the per-user cap is free again)
            if time.monotonic() >= recheck_at:
                if not await check.holds():
                    log.info("event stream closed: access revoked")
                    break
                recheck_at = time.monotonic() + recheck_seconds
            try:
                change = await _next(subscription, shutdown, min(PING_SECONDS, recheck_seconds))
            except FeedOverflow:
                log.info("event stream fell behind; closing it so the console re-reads")
                break
            if change is None:
                if time.monotonic() >= ping_at:
                    await response.write(b": ping\n\n" + await unread.frame())
                    ping_at = time.monotonic() + PING_SECONDS
                continue
            if change is UNREAD:
                await response.write(await unread.frame())
                continue
            for view in await watcher.views_for(change):
                payload = {"type": "environment", "environment": env_out(view).model_dump(mode="json")}
                await response.write(f"event: environment\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n".encode())
    except (ConnectionResetError, asyncio.CancelledError):
        pass  # the browser went away
    finally:
        subscription.close()
    return response


async def _next(subscription, shutdown: asyncio.Event, wait: float = PING_SECONDS):
    """The next change, or None after ``wait`` seconds (or on shutdown) without one."""
    getter = asyncio.ensure_future(subscription.get())
    stopper = asyncio.ensure_future(shutdown.wait())
    try:
        done, _ = await asyncio.wait({getter, stopper}, timeout=wait,
                                     return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (getter, stopper):
            if not task.done():
                task.cancel()
    if getter in done:
        return getter.result()
    return None


def install(app: web.Application) -> None:
    app[SHUTDOWN] = asyncio.Event()
    app[OPEN_STREAMS] = {}

    async def end_streams(app: web.Application) -> None:
        app[SHUTDOWN].set()

    app.on_shutdown.append(end_streams)
