"""The reverse proxy to an environment's JupyterLab, on the app's own host (``apps.py``).

* ``apps.py`` dispatches by host (``{env_id}--jupyter.{apps_domain}``), authenticates the
  request by the app cookie and checks that its user may enter the environment; this
  module only carries the exchange. Jupyter runs with ``base_url`` ``/`` (the whole host
  is its own), so paths travel unchanged, and ``Host`` is kept so Jupyter's own Origin
  check agrees with the browser's.
* Forwards to the host's *private* address + the environment's allocated Jupyter host
  port, for every host (embedded or remote): agents publish Jupyter on their private
  address only (``--private-address``; loopback for the embedded host), never on the
  public one users SSH to.
* For the embedded host's Docker environments the proxy skips Docker's userland port
  proxy and every network: plain HTTP *and websockets* go to Jupyter's Unix socket inside
  the container (seen through ``/proc/<pid>/root``, following no link the container's
  user may have planted), so the Jupyter token never crosses a network other containers
  can see. Only where no socket answers (an older image) does a websocket go to the
  container's IP, then to the published port; plain HTTP likewise.
* Strips the platform's cookies (console and app), ``Authorization`` and
  ``X-CSRF-Token``; sets ``Authorization: token <jupyter token>`` itself. Upstream
  ``Set-Cookie`` headers with a ``Domain`` attribute (they would reach sibling hosts) or
  the name of a platform or app cookie are dropped. Bodies stream both ways in chunks
  (nothing big is buffered): responses through ``upstream.py``'s lean client, straight
  from the upstream socket's callback to the client's transport; websockets, through
  aiohttp's client, are pumped frame by frame both ways.
* An open websocket re-checks its admission every ``live_recheck_seconds`` (the user
  still active and still allowed in) and closes with 1008 when it no longer holds.
* The Jupyter token never reaches the client: response headers, bodies and websocket
  text frames are scrubbed of it (Jupyter does not send it; this is the guarantee).
* Each proxied request counts as access activity (throttled) for the idle policy.
* A request that finds JupyterLab not listening yet (no socket, connection refused: it
  is still starting) waits for it instead of failing: up to ``STARTING_WAIT_SECONDS``
  in the first ``STARTING_SECONDS`` after the environment started, and
  ``RESTART_WAIT_SECONDS`` later (the image's entrypoint restarts a JupyterLab that
  died within about a second). So a tab opened the moment the console shows
  "running" gets JupyterLab as soon as it listens, not a page that reloads every 2 s.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import AsyncIterator, Awaitable, Callable

import aiohttp
from aiohttp import HttpVersion11, WSCloseCode, hdrs, web
from multidict import CIMultiDict
from yarl import URL

from remotegpu.application.environments.entry import Upstream
from remotegpu.domain.environments.models import JUPYTER_CONTAINER_PORT, JUPYTER_CONTAINER_SOCKET
from remotegpu.entrypoints.http.errors import error_response
from remotegpu.entrypoints.http.keys import CONTAINER
from remotegpu.entrypoints.http.local_host import kube_app_endpoints, local_docker_runtime, local_host_id
from remotegpu.entrypoints.http.session import PLATFORM_COOKIES, is_websocket_upgrade
from remotegpu.entrypoints.http.upstream import (
    ContainedSocket,
    Exchange,
    Target,
    UpstreamError,
    UpstreamPool,
    UpstreamTimeout,
    _open_contained,
)

log = logging.getLogger("remotegpu.proxy")

#: Never forwarded upstream, never set by upstream: the console's and the app host's own.
_PROTECTED_COOKIES = PLATFORM_COOKIES | frozenset({"rgpu_app", "__Host-rgpu_app"})

#: How much response body may wait in the kernel-bound buffer of the client's connection
#: before the proxy stops reading upstream (asyncio's default is 64 KiB: with it the
#: proxy reads a chunk, waits until the client took it, reads the next — no overlap).
WRITE_BUFFER = 1024 * 1024
#: Responses up to this size (with a Content-Length) are read whole and sent in one write.
SMALL_BODY = 64 * 1024
#: How long a direct route to a container (Docker lookup) is reused.
RESOLVE_TTL_SECONDS = 5.0
#: JupyterLab not listening yet: how long a request waits for it in the first
#: ``STARTING_SECONDS`` after its environment started, and afterwards; how often it
#: tries again meanwhile, and looks the container up again (it may have been recreated).
STARTING_SECONDS = 120.0
STARTING_WAIT_SECONDS = 15.0
RESTART_WAIT_SECONDS = 3.0
NOT_LISTENING_RETRY_SECONDS = 0.025
NOT_LISTENING_RESOLVE_SECONDS = 1.0
_HOP_BY_HOP = frozenset(h.lower() for h in (
    "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "TE", "Trailer", "Trailers",
    "Transfer-Encoding", "Upgrade",
))
# Accept-Encoding is replaced by "identity": a compressed body could not be searched
# for the Jupyter token.
# Expect is answered by our own server (aiohttp) before it reads the body.
_REQUEST_DROP = _HOP_BY_HOP | {"authorization", "cookie", "x-csrf-token", "host", "content-length", "accept-encoding", "expect"}
_WS_DROP = _REQUEST_DROP | {"sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions", "sec-websocket-protocol"}
_RESPONSE_DROP = _HOP_BY_HOP | {"content-length"}


@dataclass(frozen=True)
class _DirectRoute:
    """Ways to an embedded-host container that skip Docker's port proxy."""

    socket: ContainedSocket | None  # Jupyter's Unix socket under /proc/<pid>/root (HTTP only)
    address: tuple[str, int] | None  # the container's IP and Jupyter port


class _DirectUnreachable(Exception):
    """The container's own address cannot be reached (a websocket): use the published port."""


class _NotListening(Exception):
    """A websocket's last way was refused: JupyterLab does not listen (yet); nothing was sent."""


class JupyterProxy:
    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._client: aiohttp.ClientSession | None = None  # websockets
        self._upstream = UpstreamPool()  # plain HTTP
        # env id → (until, route or None): the embedded host's direct routes.
        self._direct: dict[str, tuple[float, _DirectRoute | None]] = {}

    # --- lifecycle --------------------------------------------------------------------

    async def ctx(self, app: web.Application) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=256, keepalive_timeout=30, enable_cleanup_closed=True)
        self._client = aiohttp.ClientSession(
            connector=connector, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None, connect=10, sock_connect=10),
        )
        yield
        await self._client.close()
        await self._upstream.close()

    # --- the handler --------------------------------------------------------------------

    async def serve(
        self, request: web.Request, upstream: Upstream, *, extra_headers: dict[str, str] | None = None,
        still_admitted: Callable[[], Awaitable[bool]] | None = None,
    ) -> web.StreamResponse:
        """Carry one request (authorised by ``apps.py``) to ``upstream``'s JupyterLab.
        ``extra_headers`` are added to the answer (a renewed app cookie); an open
        websocket closes once ``still_admitted`` answers False."""
        container = request.app[CONTAINER]
        asyncio.ensure_future(_quietly(container.environment_entry().record_activity(upstream.env_id)))
        direct = await self._direct_route(request.app, upstream)
        extra = extra_headers or {}
        if is_websocket_upgrade(request):
            return await self._websocket_waiting(request, upstream, direct, extra, still_admitted)
        return await self._http(request, upstream, direct, extra)

    async def _websocket_waiting(
        self, request: web.Request, upstream: Upstream, direct: _DirectRoute | None, extra: dict[str, str],
        still_admitted: Callable[[], Awaitable[bool]] | None,
    ) -> web.StreamResponse:
        """A websocket by the first way that takes it; one that finds JupyterLab not
        listening yet waits for it as an HTTP request does (``_http``): a notebook opened
        the moment its environment runs gets its kernel channel once JupyterLab listens."""
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        resolved_at = loop.time()
        while True:
            try:
                ways: list[Target] = [t for t in (direct.socket, direct.address) if t is not None] if direct else []
                for target in ways:
                    try:
                        return await self._websocket(request, target, upstream, extra, still_admitted, direct=True)
                    except _DirectUnreachable:
                        continue
                if not _published(upstream):
                    raise _NotListening()  # a Kubernetes Pod without an address (yet): waited for
                return await self._websocket(request, (upstream.address, upstream.port), upstream, extra, still_admitted)
            except _NotListening:
                now = loop.time()
                if deadline is None:
                    deadline = now + _listening_wait(upstream)
                transport = request.transport
                if now >= deadline or transport is None or transport.is_closing():
                    log.warning("jupyter of %s does not listen: websocket refused", upstream.env_id)
                    return error_response(502, "upstream_unavailable", "JupyterLab of this environment does not answer (yet)")
                await asyncio.sleep(NOT_LISTENING_RETRY_SECONDS)
                if loop.time() - resolved_at >= NOT_LISTENING_RESOLVE_SECONDS:
                    resolved_at = loop.time()
                    direct = await self._direct_route(request.app, upstream)

    async def _direct_route(self, app: web.Application, upstream: Upstream) -> _DirectRoute | None:
        """The ways to the container that skip Docker's port proxy, when it runs on this
        server's own Docker; on a Kubernetes host, the environment's Pod (its IP and
        Jupyter's container port, see adapters/runtime/kube_apps.py)."""
        kubernetes = upstream.host.runtime == "kubernetes"
        if not kubernetes and upstream.host.id != local_host_id(app):
            return None
        now = time.monotonic()
        hit = self._direct.get(upstream.env_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        if kubernetes:  # a Pod without an address yet is looked up again by the next try
            route = await self._pod_route(app, upstream)
            return self._remember(upstream.env_id, now, route) if route is not None else None
        runtime = local_docker_runtime(app)
        route = None
        if runtime is not None:
            try:
                address, root = await runtime.container_routes(upstream.env_id, JUPYTER_CONTAINER_PORT)
                socket = ContainedSocket(root, JUPYTER_CONTAINER_SOCKET) if root is not None else None
                if address is not None or socket is not None:
                    route = _DirectRoute(socket, address)
            except Exception:  # noqa: BLE001 - the published port still works
                log.debug("no direct route to %s", upstream.env_id, exc_info=True)
        return self._remember(upstream.env_id, now, route)

    def _remember(self, env_id: str, now: float, route: _DirectRoute | None) -> _DirectRoute | None:
        if len(self._direct) > 10_000:
            self._direct.clear()
        self._direct[env_id] = (now + RESOLVE_TTL_SECONDS, route)
        return route

    async def _pod_route(self, app: web.Application, upstream: Upstream) -> _DirectRoute | None:
        endpoints = kube_app_endpoints(app)
        if endpoints is None:
            return None
        try:
            address = await asyncio.to_thread(endpoints.address, upstream.env_id, JUPYTER_CONTAINER_PORT)
        except Exception:  # noqa: BLE001 - the API server does not answer: JupyterLab unavailable for now
            log.warning("cannot look up the Pod of %s", upstream.env_id, exc_info=True)
            return None
        return _DirectRoute(None, address) if address is not None else None

    # --- HTTP -------------------------------------------------------------------------

    async def _http(self, request: web.Request, upstream: Upstream, direct: _DirectRoute | None, extra: dict[str, str]) -> web.StreamResponse:
        headers = _forward_headers(request, upstream, _REQUEST_DROP)
        loop = asyncio.get_running_loop()
        deadline: float | None = None  # set once JupyterLab was found not listening
        resolved_at = loop.time()
        while True:
            try:
                exchange = await self._send(request, upstream, direct, headers)
                break
            except UpstreamTimeout:
                return error_response(504, "upstream_timeout", "JupyterLab of this environment took too long to answer")
            except UpstreamError as exc:
                now = loop.time()
                if _not_listening(exc):
                    if deadline is None:
                        deadline = now + _listening_wait(upstream)
                    transport = request.transport
                    if now < deadline and transport is not None and not transport.is_closing():
                        await asyncio.sleep(NOT_LISTENING_RETRY_SECONDS)
                        if loop.time() - resolved_at >= NOT_LISTENING_RESOLVE_SECONDS:
                            resolved_at = loop.time()
                            direct = await self._direct_route(request.app, upstream)
                        continue
                log.warning("jupyter of %s unreachable: %s", upstream.env_id, exc)
                return _unavailable(request)
        try:
            return await self._answer(request, exchange, upstream, extra)
        finally:
            exchange.abort()  # a no-op once the response was read whole

    async def _send(self, request: web.Request, upstream: Upstream, direct: _DirectRoute | None, headers: dict[str, str]) -> Exchange:
        """Send the request by the first way that takes it (Jupyter's socket, the
        container's address, the published port); raises the last way's ``UpstreamError``."""
        length = request.headers.get(hdrs.CONTENT_LENGTH)
        has_body = request.body_exists
        direct_targets = [t for t in (direct.socket, direct.address) if t is not None] if direct else []
        published = [(upstream.address, upstream.port)] if _published(upstream) else []
        if not direct_targets and not published:  # a Kubernetes Pod without an address (yet): waited for
            raise UpstreamError("the environment's Pod has no address", refused=True, errno=errno.ECONNREFUSED)
        ways = [*direct_targets, *published]
        for target in ways:
            try:
                return await self._upstream.request(
                    request.method, target, request.raw_path, headers,
                    body=request.content.iter_any() if has_body else None,
                    body_length=int(length) if has_body and length is not None else None,
                )
            except UpstreamTimeout:
                raise
            except UpstreamError as exc:
                if target in direct_targets:
                    self._direct.pop(upstream.env_id, None)  # looked up afresh by the next request
                    if _worth_another_way(exc, target, direct) and target is not ways[-1]:
                        continue
                raise
        raise AssertionError("unreachable: the last way raises")

    async def _answer(self, request: web.Request, exchange: Exchange, upstream: Upstream, extra: dict[str, str]) -> web.StreamResponse:
        token = upstream.jupyter_token.encode()
        headers = _response_headers(exchange.headers, upstream.jupyter_token, extra)
        length = exchange.headers.get(hdrs.CONTENT_LENGTH)
        scrub = bool(token) and hdrs.CONTENT_ENCODING not in exchange.headers
        if request.method == "HEAD":
            return await _head_only(request, exchange.status, exchange.reason, headers, length)
        if not exchange.expects_body or (length is not None and int(length) <= SMALL_BODY):
            # No body, or a small one (API answers, most assets): read it whole and answer
            # with headers and body in one write, instead of streaming it in pieces.
            body = await exchange.read()
            if scrub and token in body:
                body = body.replace(token, b"*" * len(token))
            return web.Response(status=exchange.status, reason=exchange.reason, body=body or None, headers=headers)
        response = web.StreamResponse(status=exchange.status, reason=exchange.reason, headers=headers)
        if length is not None:
            response.content_length = int(length)
        elif request.version >= HttpVersion11:
            # Said here, not left to aiohttp, so that ``response.chunked`` tells the sink
            # to frame what it writes past aiohttp's writer.
            response.enable_chunked_encoding()
        await response.prepare(request)
        transport = request.transport
        if transport is None:
            return response
        _widen_write_buffer(transport)
        sink = _BodySink(transport, token if scrub else b"", chunked=response.chunked)
        # The head leaves with the body that came with it, in one write (one wake-up of
        # the client, not two); the rest follows straight to the transport.
        await response.write(sink.scrub(exchange.take_pending()))
        try:
            await exchange.relay(sink, request.writer.drain)
            sink.flush()
        except UpstreamError as exc:  # cut off mid-body: the client must not take it as whole
            log.warning("jupyter of %s: response cut off: %s", upstream.env_id, exc)
            transport.abort()
            return response
        except ConnectionResetError:  # the client went away
            return response
        await response.write_eof()
        return response

    # --- websockets -------------------------------------------------------------------

    async def _websocket(
        self, request: web.Request, target: Target, upstream: Upstream, extra: dict[str, str],
        still_admitted: Callable[[], Awaitable[bool]] | None, *, direct: bool = False,
    ) -> web.StreamResponse:
        assert self._client is not None
        headers = _forward_headers(request, upstream, _WS_DROP)
        protocols = [p.strip() for p in request.headers.get(hdrs.SEC_WEBSOCKET_PROTOCOL, "").split(",") if p.strip()]
        own_session: aiohttp.ClientSession | None = None
        try:
            if isinstance(target, ContainedSocket):
                # Jupyter's Unix socket in the container, reached through an O_PATH
                # descriptor of it (no link followed): no network carries the token.
                leaf = _open_contained(target)
                try:
                    own_session = aiohttp.ClientSession(
                        connector=aiohttp.UnixConnector(path=f"/proc/self/fd/{leaf}"), auto_decompress=False,
                        cookie_jar=aiohttp.DummyCookieJar(), timeout=aiohttp.ClientTimeout(total=None, connect=10, sock_connect=10),
                    )
                    upstream_ws = await own_session.ws_connect(
                        _url(request, "localhost", JUPYTER_CONTAINER_PORT).with_scheme("ws"),
                        headers=headers, protocols=protocols, max_msg_size=0, autoping=True,
                    )
                finally:
                    os.close(leaf)
            else:
                upstream_ws = await self._client.ws_connect(
                    _url(request, *target).with_scheme("ws"), headers=headers, protocols=protocols, max_msg_size=0, autoping=True,
                )
        except aiohttp.WSServerHandshakeError as exc:
            await _close(own_session)
            return error_response(exc.status if exc.status >= 400 else 502, "upstream_refused", "JupyterLab refused the websocket")
        except (aiohttp.ClientConnectorError, OSError) as exc:
            await _close(own_session)
            if direct:
                self._direct.pop(upstream.env_id, None)
                os_error = getattr(exc, "os_error", exc)
                # As for HTTP (_worth_another_way): a refused container address means
                # Jupyter does not listen yet; anything else, try the next way.
                if isinstance(target, ContainedSocket) or getattr(os_error, "errno", None) != errno.ECONNREFUSED:
                    raise _DirectUnreachable() from None
            if getattr(getattr(exc, "os_error", exc), "errno", None) in (errno.ECONNREFUSED, errno.ENOENT):
                raise _NotListening() from None  # nothing was sent: waited for (_websocket_waiting)
            return error_response(502, "upstream_unavailable", "JupyterLab of this environment does not answer (yet)")
        except (aiohttp.ClientError, asyncio.TimeoutError):
            await _close(own_session)
            return error_response(502, "upstream_unavailable", "JupyterLab of this environment does not answer (yet)")
        client_ws = web.WebSocketResponse(protocols=[upstream_ws.protocol] if upstream_ws.protocol else (), max_msg_size=0)
        for name, value in extra.items():
            client_ws.headers.add(name, value)
        await client_ws.prepare(request)
        token = upstream.jupyter_token
        entry = request.app[CONTAINER].environment_entry()
        revoked = False

        async def downstream() -> None:  # Jupyter → browser
            async for msg in upstream_ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    await client_ws.send_str(_scrub_text(msg.data, token))
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    await client_ws.send_bytes(msg.data.replace(token.encode(), b"*" * len(token)) if token else msg.data)
                else:
                    break

        async def upstream_pump() -> None:  # browser → Jupyter
            async for msg in client_ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    await upstream_ws.send_str(msg.data)
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    await upstream_ws.send_bytes(msg.data)
                else:
                    break
                await entry.record_activity(upstream.env_id)

        async def watch() -> None:  # what admitted the socket must keep holding
            nonlocal revoked
            if still_admitted is None:
                await asyncio.Event().wait()
            interval = live_recheck_seconds(request.app)
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
            await upstream_ws.close()
            await _close(own_session)
            if revoked:
                log.info("websocket to %s closed: access revoked", upstream.env_id)
                await client_ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"access revoked")
            else:
                await client_ws.close()
        return client_ws


_STARTING_PAGE = """<!doctype html><html><head><meta charset="utf-8"><meta http-equiv="refresh" content="2">
<title>Starting JupyterLab…</title><style>body{font-family:system-ui,sans-serif;margin:4rem auto;max-width:40rem;color:#1f2937}</style>
</head><body><h1>Starting JupyterLab…</h1><p>It does not answer yet; this page reloads by itself.</p></body></html>"""


def _unavailable(request: web.Request) -> web.Response:
    """502 while JupyterLab is not up (yet). A page navigation gets a page that reloads
    itself every 2 s instead of a JSON error, so a JupyterLab tab opened from the console
    right after the environment started simply comes up."""
    if request.method == "GET" and "text/html" in request.headers.get(hdrs.ACCEPT, ""):
        return web.Response(status=502, text=_STARTING_PAGE, content_type="text/html",
                            headers={hdrs.CACHE_CONTROL: "no-store", hdrs.RETRY_AFTER: "2"})
    return error_response(502, "upstream_unavailable", "JupyterLab of this environment does not answer (yet)")


def _published(upstream: Upstream) -> bool:
    """Whether the environment's host publishes Jupyter on its private address. Not a
    Kubernetes host's: there the Pod is the only way (no host port to fall back on)."""
    return upstream.host.runtime != "kubernetes"


def _not_listening(exc: UpstreamError) -> bool:
    """The connection was refused, or Jupyter's socket is not there: nothing of the
    request was sent, and JupyterLab is (re)starting or gone."""
    return exc.refused and exc.errno in (errno.ENOENT, errno.ECONNREFUSED)


def _listening_wait(upstream: Upstream) -> float:
    """How long a request waits for JupyterLab to listen (see the module's doc)."""
    started = upstream.started_at
    if started is None:
        return RESTART_WAIT_SECONDS
    if started.tzinfo is None:
        started = started.replace(tzinfo=timezone.utc)
    age = (datetime.now(timezone.utc) - started).total_seconds()
    return STARTING_WAIT_SECONDS if age < STARTING_SECONDS else RESTART_WAIT_SECONDS


def _worth_another_way(exc: UpstreamError, target: Target, direct: _DirectRoute | None) -> bool:
    """Whether, after a direct way failed, the next one may do better. Only if nothing
    was sent, and not when the container's own address refused: then Jupyter does not
    listen (yet), and its published port leads to the same place through Docker's port
    proxy, which would hold the connection open while it retries."""
    if not exc.refused:
        return False
    return not (direct is not None and target == direct.address and exc.errno == errno.ECONNREFUSED)


def _url(request: web.Request, host: str, port: int) -> URL:
    return URL.build(scheme="http", host=host, port=port, encoded=True,
                     path=request.raw_path.split("?", 1)[0], query_string=request.query_string)


def live_recheck_seconds(app: web.Application) -> float:
    return app[CONTAINER].settings().live_recheck_seconds


async def _close(session: aiohttp.ClientSession | None) -> None:
    if session is not None:
        await session.close()


def _response_headers(upstream_headers: CIMultiDict[str], jupyter_token: str, extra: dict[str, str]) -> CIMultiDict[str]:
    """What of upstream's response headers the browser gets: hop-by-hop ones dropped, the
    token masked, and no ``Set-Cookie`` that could reach beyond this host (``Domain``) or
    stand in for the platform's own cookies; then ``extra``."""
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in upstream_headers.items():
        lowered = name.lower()
        if lowered in _RESPONSE_DROP:
            continue
        if lowered == "set-cookie" and not _harmless_cookie(value):
            log.info("dropped an upstream Set-Cookie that names a platform cookie or a Domain")
            continue
        headers.add(name, _scrub_text(value, jupyter_token))
    for name, value in extra.items():
        headers.add(name, value)
    return headers


def _harmless_cookie(set_cookie: str) -> bool:
    """A cookie upstream may set: host-only (no ``Domain``) and not named like ours."""
    name = set_cookie.split("=", 1)[0].strip()
    if name in _PROTECTED_COOKIES or name.lower().startswith("rgpu_") or name.lower().startswith(("__host-rgpu", "__secure-rgpu")):
        return False
    for attribute in set_cookie.split(";")[1:]:
        if attribute.strip().lower().startswith("domain"):
            return False
    return True


def _forward_headers(request: web.Request, upstream: Upstream, drop: frozenset[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        if name.lower() not in drop:
            headers[name] = value
    cookies = [f"{k}={v}" for k, v in request.cookies.items() if k not in _PROTECTED_COOKIES]
    if cookies:
        headers[hdrs.COOKIE] = "; ".join(cookies)
    headers[hdrs.HOST] = request.host  # Jupyter checks Origin against Host
    headers["X-Forwarded-Proto"] = request.scheme
    if request.remote:
        headers["X-Forwarded-For"] = request.remote
    headers[hdrs.AUTHORIZATION] = f"token {upstream.jupyter_token}"
    # Bodies must arrive uncompressed to be searched for the token (and aiohttp's
    # client would otherwise ask for gzip by itself).
    headers[hdrs.ACCEPT_ENCODING] = "identity"
    return headers


def _scrub_text(value: str, token: str) -> str:
    return value.replace(token, "*" * len(token)) if token and token in value else value


def _scrub_stream(data: bytes, token: bytes) -> tuple[bytes, bytes]:
    """Mask ``token`` (same length, so Content-Length holds) in a stream: returns what can
    be sent now and the tail to hold back — the longest end of ``data`` that begins the
    token (it may straddle two chunks); usually nothing, so nothing is copied."""
    if token in data:
        data = data.replace(token, b"*" * len(token))
    held = _token_prefix_at_end(data, token)
    if not held:
        return data, b""
    return data[:-held], data[-held:]


def _token_prefix_at_end(data: bytes, token: bytes) -> int:
    """Length of the longest proper prefix of ``token`` that ``data`` ends with (0: none)."""
    first = token[:1]
    start = max(0, len(data) - len(token) + 1)
    at = data.find(first, start)
    while at != -1:
        if token.startswith(data[at:]):
            return len(data) - at
        at = data.find(first, at + 1)
    return 0


async def _head_only(request: web.Request, status: int, reason: str, headers: CIMultiDict, length: str | None) -> web.StreamResponse:
    """A HEAD answer keeps upstream's Content-Length (the size GET would send), which
    aiohttp's ``Response`` would replace with the length of its empty body."""
    response = web.StreamResponse(status=status, reason=reason, headers=headers)
    if length is not None:
        response.content_length = int(length)
    await response.prepare(request)
    await response.write_eof()
    return response


def _widen_write_buffer(transport: asyncio.Transport) -> None:
    """Let up to ``WRITE_BUFFER`` bytes queue for the client, so reading upstream and
    writing downstream overlap (see ``WRITE_BUFFER``)."""
    try:
        if transport.get_write_buffer_limits()[1] < WRITE_BUFFER:
            transport.set_write_buffer_limits(high=WRITE_BUFFER)
    except (AttributeError, NotImplementedError, ValueError):
        pass


class _BodySink:
    """Writes a streamed body straight to the client's transport (``upstream.Sink``):
    the token masked — a piece that may begin it is held back until the next chunk shows
    whether it does — and each piece framed when the response is chunked. Answers True
    while the transport holds more than ``WRITE_BUFFER``, which pauses reading upstream."""

    def __init__(self, transport: asyncio.Transport, token: bytes, *, chunked: bool) -> None:
        self._transport = transport
        self._token = token
        self._chunked = chunked
        self._held = b""

    def __call__(self, data: bytes) -> bool:
        if self._transport.is_closing():
            raise ConnectionResetError("the client closed the connection")
        data = self.scrub(data)
        if data:
            self._send(data)
        return self._transport.get_write_buffer_size() > WRITE_BUFFER

    def scrub(self, data: bytes) -> bytes:
        """What of ``data`` may be sent now, token masked; the rest is held back."""
        if self._token:
            data, self._held = _scrub_stream(self._held + data if self._held else data, self._token)
        return data

    def flush(self) -> None:
        if self._held:
            self._send(self._held)
            self._held = b""

    def _send(self, data: bytes) -> None:
        if self._chunked:
            self._transport.writelines((b"%x\r\n" % len(data), data, b"\r\n"))
        else:
            self._transport.write(data)


async def _quietly(coro) -> None:
    try:
        await coro
    except Exception:  # noqa: BLE001 - activity is best effort
        log.debug("recording access activity failed", exc_info=True)


def install(app: web.Application) -> JupyterProxy:
    proxy = JupyterProxy(app)
    app.cleanup_ctx.append(proxy.ctx)
    return proxy
