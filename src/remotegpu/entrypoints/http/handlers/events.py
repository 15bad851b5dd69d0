"""Server-sent events: ``GET /api/v1/events/stream`` pushes environment changes.

The console opens one ``EventSource`` (the session cookie authenticates it) instead
of polling. Each change the caller may see arrives as::

    event: environment
    data: {"type": "environment", "environment": {...as GET /api/v1/environments/{id}}}

A comment line every ``PING_SECONDS`` keeps proxies from closing an idle stream. The
server ends a stream after ``MAX_STREAM_SECONDS`` (the browser reconnects by itself,
re-authenticated), when the subscriber fell behind (the console re-reads the list
on every reconnect, so nothing is lost), and within ``RECHECK_SECONDS`` of the account
being disabled.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from aiohttp import web

from remotegpu.application.shared.change_feed import FeedOverflow
from remotegpu.entrypoints.http.handlers import api
from remotegpu.entrypoints.http.handlers.environments import env_out
from remotegpu.entrypoints.http.handlers.notifications import UNREAD, UnreadPush
from remotegpu.entrypoints.http.routing import Call

log = logging.getLogger("remotegpu.events")

PING_SECONDS = 15.0
#: How often an open stream checks that its account is still active.
RECHECK_SECONDS = 15.0
MAX_STREAM_SECONDS = 15 * 60
RETRY_MS = 3000
#: Set on shutdown so open streams end at once instead of holding the server up.
SHUTDOWN = web.AppKey("event_streams_shutdown", asyncio.Event)


@api.get("/api/v1/events/stream", tags=["events"], errors=[401])
async def event_stream(call: Call) -> web.StreamResponse:
    """text/event-stream of changes to the environments of the caller's workspaces."""
    request = call.request
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
        recheck_at = time.monotonic() + RECHECK_SECONDS
        while not shutdown.is_set() and time.monotonic() < deadline:
            if time.monotonic() >= recheck_at:
                if not await call.container.auth_service().is_active(call.user.id):
                    log.info("event stream of a disabled account closed")
                    break
                recheck_at = time.monotonic() + RECHECK_SECONDS
            try:
                change = await _next(subscription, shutdown)
            except FeedOverflow:
                log.info("event stream fell behind; closing it so the console re-reads")
                break
            if change is None:
                await response.write(b": ping\n\n" + await unread.frame())
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


async def _next(subscription, shutdown: asyncio.Event):
    """The next change, or None after PING_SECONDS (or on shutdown) without one."""
    getter = asyncio.ensure_future(subscription.get())
    stopper = asyncio.ensure_future(shutdown.wait())
    try:
        done, _ = await asyncio.wait({getter, stopper}, timeout=min(PING_SECONDS, RECHECK_SECONDS),
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

    async def end_streams(app: web.Application) -> None:
        app[SHUTDOWN].set()

    app.on_shutdown.append(end_streams)
