"""A lean HTTP/1.1 client for the Jupyter proxy (``proxy.py``).

Pooled keep-alive connections whose response bodies go from the upstream socket's
``data_received`` straight into a *sink* — the proxy's writer to the browser's
connection — with no stream buffer, task wake-up or ``await`` per chunk. aiohttp's
client, which the proxy used before, hands each chunk through a StreamReader to a
coroutine that then writes it; on a 1 MiB download (about ten reads) that path cost
about twice this one in CPU (``bench/proxy.py`` measures both ends of the hop).

Response heads are parsed by httptools (llhttp, Node's parser); a body with a
Content-Length is then counted here and passed on as it was read (no copy); a chunked
body goes through llhttp, which removes the framing. Websockets are not handled here
(the proxy keeps aiohttp's client for them).

Flow control: a sink answers True when the receiver has enough queued; reading from
upstream then pauses until the relay (``Exchange.relay``) has drained the receiver.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import stat
import time
from collections.abc import AsyncIterable, Awaitable, Callable
from dataclasses import dataclass

import httptools
from multidict import CIMultiDict

from remotegpu.adapters.runtime.contained import open_contained

CONNECT_TIMEOUT = 10.0
#: How long upstream may take to begin its answer. Jupyter answers within seconds even
#: when busy; this bounds a connection that was accepted and then never served (a port
#: proxy still dialling a container that is not up).
HEAD_TIMEOUT = 300.0
#: A pooled connection unused for this long is closed instead of reused (Jupyter's
#: server keeps idle connections far longer; this only bounds what we hold open).
IDLE_SECONDS = 30.0
MAX_IDLE_PER_TARGET = 64
#: Body bytes read ahead before anyone relays them; reading pauses beyond this.
READ_AHEAD = 1024 * 1024
MAX_HEAD = 64 * 1024

#: Takes body bytes; answers True when the receiver wants no more until drained.
Sink = Callable[[bytes], bool]


@dataclass(frozen=True)
class ContainedSocket:
    """A Unix socket at ``path`` inside a directory tree that someone else controls: a
    container's root as its host sees it, ``/proc/<pid>/root``. It is reached without
    following any symbolic link below ``root``: the container's user could otherwise
    point the path at one of the host's own sockets (Docker's, say), and the proxy would
    carry their requests there."""

    root: str
    path: str


#: Where upstream listens: (host, port), or a Unix socket in a container.
Target = tuple[str, int] | ContainedSocket

_HEAD, _FIXED, _CHUNKED, _UNTIL_CLOSE, _DONE = range(5)


class UpstreamError(Exception):
    """The exchange with upstream failed. ``refused``: the connection could not be made,
    so nothing of the request reached upstream (safe to try elsewhere); ``errno`` says
    why, when the system did."""

    def __init__(self, message: str, *, refused: bool = False, errno: int | None = None) -> None:
        super().__init__(message)
        self.refused = refused
        self.errno = errno


class UpstreamTimeout(UpstreamError):
    """Upstream took the request but did not begin answering within ``HEAD_TIMEOUT``."""


class _StaleConnection(Exception):
    """A reused connection closed before answering: upstream dropped it while idle."""


class Exchange:
    """The response to one request, as it arrives."""

    def __init__(self, conn: _Connection, method: str, reused: bool) -> None:
        self._conn = conn
        self._method = method
        self._reused = reused
        loop = asyncio.get_running_loop()
        self._head: asyncio.Future[None] = loop.create_future()
        self._wakeup: asyncio.Future[None] | None = None
        self.status = 0
        self.reason = ""
        self.headers: CIMultiDict[str] = CIMultiDict()
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._sink: Sink | None = None
        self._paused = False
        self._done = False
        self._error: BaseException | None = None
        self.saw_bytes = False

    @property
    def expects_body(self) -> bool:
        return self._method != "HEAD" and not (100 <= self.status < 200 or self.status in (204, 304))

    async def read(self) -> bytes:
        """The whole body (for small ones: it is held in memory)."""
        while not self._done:
            self._resume()
            await self._wait()
        if self._error is not None:
            raise self._error
        body = b"".join(self._pending)
        self._pending.clear()
        return body

    def take_pending(self) -> bytes:
        """The body read so far (typically what came with the head); it is not relayed."""
        pending, self._pending, self._pending_size = self._pending, [], 0
        self._resume()
        return b"".join(pending)

    async def relay(self, sink: Sink, drain: Callable[[], Awaitable[None]]) -> None:
        """Feed the body to ``sink`` as it arrives, until it ends; ``drain`` waits until
        the receiver can take more after ``sink`` said it had enough."""
        self._sink = sink
        pending, self._pending, self._pending_size = self._pending, [], 0
        full = False
        for chunk in pending:
            full = sink(chunk) or full
        if full:
            self._pause()
        while True:
            if self._error is not None:
                raise self._error
            if self._paused:
                await drain()
                self._resume()
            elif self._done:
                return
            else:
                await self._wait()

    def abort(self) -> None:
        """Give up on this response: the connection is closed, not reused."""
        if not self._done:
            self._done = True
            self._conn.discard()

    # --- fed by the connection --------------------------------------------------------

    def _headed(self, status: int, reason: str, headers: CIMultiDict[str]) -> None:
        self.status, self.reason, self.headers = status, reason, headers
        if not self._head.done():
            self._head.set_result(None)

    def _body(self, data: bytes) -> None:
        if self._sink is None:
            self._pending.append(data)
            self._pending_size += len(data)
            if self._pending_size > READ_AHEAD:
                self._pause()
            return
        try:
            full = self._sink(data)
        except Exception as exc:  # noqa: BLE001 - the receiver went away: stop reading
            self._fail(exc)
            return
        if full:
            self._pause()

    def _complete(self) -> None:
        self._done = True
        self._wake()

    def _fail(self, exc: BaseException) -> None:
        if self._done:
            return
        self._error = exc
        self._done = True
        if not self._head.done():
            self._head.set_exception(exc)
            self._head.exception()  # retrieved by whoever awaits it; silence "never retrieved"
        self._conn.discard()
        self._wake()

    # --- internals --------------------------------------------------------------------

    def _pause(self) -> None:
        if not self._paused:
            self._paused = True
            self._conn.pause_reading()
            self._wake()

    def _resume(self) -> None:
        if self._paused:
            self._paused = False
            self._conn.resume_reading()

    async def _wait(self) -> None:
        self._wakeup = asyncio.get_running_loop().create_future()
        try:
            await self._wakeup
        finally:
            self._wakeup = None

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)


class _Connection(asyncio.Protocol):
    """One keep-alive connection to upstream; serves one exchange at a time."""

    def __init__(self, pool: UpstreamPool, key: Target) -> None:
        self._pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self.exchange: Exchange | None = None
        self._state = _DONE
        self._head_buffer = bytearray()
        self._parser: httptools.HttpResponseParser | None = None
        self._remaining = 0
        self._reason = ""
        self._headers: list[tuple[str, str]] = []
        self._keep_alive = False
        self._reading_paused = False
        self._write_paused = False
        self._drained: asyncio.Future[None] | None = None

    # --- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        exchange = self.exchange
        if exchange is None or self._state == _DONE:
            self.discard()  # bytes nobody asked for: the connection cannot be trusted
            return
        exchange.saw_bytes = True
        try:
            if self._state == _HEAD:
                data = self._take_head(data)
                if not data:
                    return
            if self._state == _FIXED:
                if len(data) < self._remaining:
                    self._remaining -= len(data)
                    exchange._body(data)
                else:
                    extra = len(data) > self._remaining  # bytes past the body: out of step
                    body = data[: self._remaining] if extra else data
                    self._remaining = 0
                    if body:
                        exchange._body(body)
                    self._finish(reuse=not extra)
            elif self._state == _CHUNKED:
                assert self._parser is not None
                self._parser.feed_data(data)
            elif self._state == _UNTIL_CLOSE:
                exchange._body(data)
            elif self._state == _DONE:  # bytes after the response ended
                self.discard()
        except (httptools.HttpParserError, ValueError) as exc:
            exchange._fail(UpstreamError(f"malformed response from upstream: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.exchange is None:  # idle in the pool: upstream closed it (or its container went)
            self._pool._forget(self)
        exchange = self.exchange
        if exchange is not None and not exchange._done:
            if self._state == _UNTIL_CLOSE:
                exchange._complete()  # a body without length ends when the connection does
            elif exchange._reused and not exchange.saw_bytes:
                exchange._fail(_StaleConnection())
            else:
                exchange._fail(UpstreamError(f"upstream closed the connection: {exc or 'end of stream'}"))
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    # --- httptools callbacks (heads, chunked bodies) -----------------------------------

    def on_status(self, status: bytes) -> None:
        self._reason = status.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_body(self, body: bytes) -> None:
        if self._state == _CHUNKED and self.exchange is not None:
            self.exchange._body(body)

    def on_message_complete(self) -> None:
        if self._state == _CHUNKED:
            self._finish(reuse=True)

    # --- used by the pool and the exchange ----------------------------------------------

    def begin(self, exchange: Exchange) -> None:
        self.exchange = exchange
        self._state = _HEAD
        self._head_buffer.clear()
        if self.closed:  # closed before this exchange began: nothing else will tell it
            exchange._fail(_StaleConnection() if exchange._reused else UpstreamError("upstream closed the connection at once"))

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    async def drain(self) -> None:
        if self.closed:
            raise ConnectionResetError("upstream closed the connection")
        if self._write_paused:
            self._drained = asyncio.get_running_loop().create_future()
            try:
                await self._drained
            finally:
                self._drained = None
            if self.closed:
                raise ConnectionResetError("upstream closed the connection")

    def pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None and not self.closed:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._reading_paused and self.transport is not None and not self.closed:
            self._reading_paused = False
            self.transport.resume_reading()

    def discard(self) -> None:
        self._state = _DONE
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.abort()

    # --- internals --------------------------------------------------------------------

    def _take_head(self, data: bytes) -> bytes:
        """Buffer until a whole head is here, parse it, set the body state; return what
        follows the head (body bytes)."""
        assert self.exchange is not None
        self._head_buffer += data
        while True:
            end = self._head_buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._head_buffer) > MAX_HEAD:
                    raise ValueError("response head too large")
                return b""
            head, rest = bytes(self._head_buffer[: end + 4]), bytes(self._head_buffer[end + 4:])
            self._head_buffer.clear()
            self._headers, self._reason = [], ""
            parser = httptools.HttpResponseParser(self)
            parser.feed_data(head)
            status = parser.get_status_code()
            if 100 <= status < 200 and status != 101:  # informational: the real head follows
                self._head_buffer += rest
                continue
            self._keep_alive = parser.should_keep_alive()
            headers = CIMultiDict(self._headers)
            self.exchange._headed(status, self._reason, headers)
            if not self.exchange.expects_body:  # heads are parsed alone, so even HEAD's may be reused
                self._finish(reuse=not rest)
                return b""
            if "chunked" in headers.get("Transfer-Encoding", "").lower():
                self._state, self._parser = _CHUNKED, parser
            elif "Content-Length" in headers:
                self._remaining = int(headers["Content-Length"])
                if self._remaining < 0:
                    raise ValueError("negative Content-Length")
                self._state = _FIXED
                if self._remaining == 0:
                    self._finish(reuse=not rest)
                    return b""
            else:
                self._state, self._keep_alive = _UNTIL_CLOSE, False
            return rest

    def _finish(self, *, reuse: bool) -> None:
        exchange = self.exchange
        self._state = _DONE
        self._parser = None
        if exchange is not None:
            exchange._complete()
        if reuse and self._keep_alive and not self.closed:
            self.exchange = None
            self.resume_reading()  # notice upstream closing it while idle
            self._pool._release(self)
        else:
            self.discard()


class UpstreamPool:
    """Keep-alive connections per (host, port)."""

    def __init__(self, head_timeout: float = HEAD_TIMEOUT) -> None:
        self.head_timeout = head_timeout
        self._idle: dict[Target, list[_Connection]] = {}

    async def request(
        self, method: str, key: Target, path: str, headers: dict[str, str],
        body: AsyncIterable[bytes] | None = None, body_length: int | None = None,
    ) -> Exchange:
        """Send a request to ``key``; returns once the response head is here. ``path`` is
        the raw path and query. A body without ``body_length`` is sent chunked."""
        chunked = body is not None and body_length is None
        head = _request_head(method, path, headers, body_length, chunked)
        if body is None:  # a bodiless request can be retried when a reused connection was stale
            conn = self._take_idle(key)
            while conn is not None:
                try:
                    return await self._exchange(conn, method, head, None, False, reused=True)
                except _StaleConnection:
                    conn = self._take_idle(key)
        conn = await self._connect(key)
        try:
            return await self._exchange(conn, method, head, body, chunked, reused=False)
        except _StaleConnection:
            raise UpstreamError("upstream closed the connection without answering") from None

    async def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.discard()
        self._idle.clear()

    async def _exchange(
        self, conn: _Connection, method: str, head: bytes, body: AsyncIterable[bytes] | None, chunked: bool,
        *, reused: bool,
    ) -> Exchange:
        exchange = Exchange(conn, method, reused)
        conn.begin(exchange)
        try:
            if not exchange._done:  # (done already: the connection was found closed)
                conn.write(head)
                if body is not None:
                    await _send_body(conn, body, chunked, exchange)
            try:
                await asyncio.wait_for(asyncio.shield(exchange._head), self.head_timeout)
            except asyncio.TimeoutError:
                raise UpstreamTimeout(f"no answer within {self.head_timeout:.0f} s") from None
        except BaseException:
            exchange.abort()
            raise
        return exchange

    async def _connect(self, key: Target) -> _Connection:
        loop = asyncio.get_running_loop()
        if isinstance(key, ContainedSocket):
            connecting = _connect_contained(loop, key, lambda: _Connection(self, key))
        else:
            connecting = loop.create_connection(lambda: _Connection(self, key), key[0], key[1])
        try:
            _, conn = await asyncio.wait_for(connecting, CONNECT_TIMEOUT)
        except (OSError, asyncio.TimeoutError) as exc:
            raise UpstreamError(
                f"cannot connect to {_name(key)}: {exc or 'timed out'}", refused=True, errno=getattr(exc, "errno", None),
            ) from None
        return conn

    def _take_idle(self, key: Target) -> _Connection | None:
        conns = self._idle.get(key)
        now = time.monotonic()
        while conns:
            conn = conns.pop()  # the most recently used: the likeliest to be alive
            if not conn.closed and now - conn.idle_since < IDLE_SECONDS:
                return conn
            conn.discard()
        return None

    def _forget(self, conn: _Connection) -> None:
        """Drop a pooled connection that closed, and its target once none is left (a
        container's socket path changes with each start of it)."""
        conns = self._idle.get(conn.key)
        if conns is not None and conn in conns:
            conns.remove(conn)
        if not conns:
            self._idle.pop(conn.key, None)

    def _release(self, conn: _Connection) -> None:
        conns = self._idle.setdefault(conn.key, [])
        if len(conns) >= MAX_IDLE_PER_TARGET:
            conn.discard()
            return
        conn.idle_since = time.monotonic()
        conns.append(conn)


async def _send_body(conn: _Connection, body: AsyncIterable[bytes], chunked: bool, exchange: Exchange) -> None:
    try:
        async for chunk in body:
            if exchange._done:  # upstream answered (or failed) before taking it all
                return
            if not chunk:
                continue
            conn.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            await conn.drain()
        if chunked:
            conn.write(b"0\r\n\r\n")
    except ConnectionResetError:
        return  # upstream closed while taking the body: its answer, if any, still counts


def _name(key: Target) -> str:
    return f"{key.root}{key.path}" if isinstance(key, ContainedSocket) else f"{key[0]}:{key[1]}"


async def _connect_contained(
    loop: asyncio.AbstractEventLoop, target: ContainedSocket, factory: Callable[[], _Connection],
) -> tuple[asyncio.BaseTransport, _Connection]:
    """Connect through ``/proc/self/fd/<n>``, an O_PATH descriptor of the socket's own
    inode, found one component at a time with O_NOFOLLOW: a link anywhere on the way,
    or anything but a socket at the end, fails the connection."""
    leaf = _open_contained(target)
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, f"/proc/self/fd/{leaf}")
        except BaseException:
            sock.close()
            raise
    finally:
        os.close(leaf)
    return await loop.create_unix_connection(factory, sock=sock)


def _open_contained(target: ContainedSocket) -> int:
    leaf = open_contained(target.root, target.path)
    if not stat.S_ISSOCK(os.fstat(leaf).st_mode):
        os.close(leaf)
        raise OSError(errno.ENOTSOCK, f"not a socket: {_name(target)}")
    return leaf


def _request_head(method: str, target: str, headers: dict[str, str], body_length: int | None, chunked: bool) -> bytes:
    lines = [f"{method} {target} HTTP/1.1"]
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    if body_length is not None:
        lines.append(f"Content-Length: {body_length}")
    elif chunked:
        lines.append("Transfer-Encoding: chunked")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("latin-1")
