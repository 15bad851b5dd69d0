"""The proxy's lean HTTP/1.1 client (entrypoints/http/upstream.py) against real sockets:
bodies with a length, chunked and until-close; HEAD and 204; keep-alive reuse and the
retry of a connection upstream dropped while idle; uploads; a receiver that is full
pauses reading upstream; failures become UpstreamError, never a hang."""

from __future__ import annotations

import asyncio
import errno

import pytest

from remotegpu.entrypoints.http.upstream import ContainedSocket, UpstreamError, UpstreamPool, UpstreamTimeout


class Upstream:
    """A scripted HTTP server: ``answer(request_head, reader, writer)`` per request."""

    def __init__(self, answer) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[bytes] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.requests.append(head)
                if await self.answer(head, reader, writer) is False:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def fixed(body: bytes, status: str = "200 OK"):
    async def answer(head, reader, writer):
        writer.write(f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        await writer.drain()
    return answer


class Collect:
    """A sink that keeps what it is given; ``full`` makes it ask for a pause."""

    def __init__(self, full: bool = False) -> None:
        self.data = bytearray()
        self.full = full
        self.drains = 0

    def __call__(self, chunk: bytes) -> bool:
        self.data += chunk
        return self.full

    async def drain(self) -> None:
        self.drains += 1
        self.full = False


async def get(pool: UpstreamPool, port: int, method: str = "GET", **kw):
    return await asyncio.wait_for(pool.request(method, ("127.0.0.1", port), "/x?y=1", {"Host": "h"}, **kw), 5)


async def test_a_body_with_a_length_is_relayed_whole_and_the_connection_reused():
    body = bytes(range(256)) * 4096  # 1 MiB
    upstream = Upstream(fixed(body))
    port = await upstream.start()
    pool = UpstreamPool()
    for _ in range(3):
        exchange = await get(pool, port)
        assert exchange.status == 200 and exchange.headers["Content-Length"] == str(len(body))
        sink = Collect()
        await asyncio.wait_for(exchange.relay(sink, sink.drain), 5)
        assert bytes(sink.data) == body
    assert upstream.connections == 1
    assert upstream.requests[0].startswith(b"GET /x?y=1 HTTP/1.1\r\nHost: h\r\n")
    await pool.close()


async def test_a_socket_inside_a_container_serves_like_a_port(tmp_path):
    (tmp_path / "run").mkdir()
    upstream = Upstream(fixed(b"over a unix socket"))
    upstream.server = await asyncio.start_unix_server(upstream._serve, str(tmp_path / "run" / "jupyter.sock"))
    pool = UpstreamPool()
    target = ContainedSocket(str(tmp_path), "/run/jupyter.sock")
    for _ in range(2):
        exchange = await asyncio.wait_for(pool.request("GET", target, "/api/status", {"Host": "h"}), 5)
        assert exchange.status == 200 and await exchange.read() == b"over a unix socket"
    assert upstream.connections == 1
    with pytest.raises(UpstreamError) as failure:
        await pool.request("GET", ContainedSocket(str(tmp_path), "/run/gone.sock"), "/", {"Host": "h"})
    assert failure.value.refused and failure.value.errno == errno.ENOENT
    await pool.close()


@pytest.mark.parametrize("plant", ["socket", "folder"])
async def test_links_planted_inside_the_container_are_not_followed(tmp_path, plant):
    """The container's root user owns everything below its root: a link there must not
    lead the proxy to one of the host's sockets."""
    host = tmp_path / "host"
    host.mkdir()
    upstream = Upstream(fixed(b"the host's own service"))
    upstream.server = await asyncio.start_unix_server(upstream._serve, str(host / "jupyter.sock"))
    root = tmp_path / "container"
    (root / "run").mkdir(parents=True)
    if plant == "socket":
        (root / "run" / "jupyter.sock").symlink_to(host / "jupyter.sock")
    else:
        (root / "run" / "remotegpu").symlink_to(host)
    path = "/run/jupyter.sock" if plant == "socket" else "/run/remotegpu/jupyter.sock"
    with pytest.raises(UpstreamError) as failure:
        await UpstreamPool().request("GET", ContainedSocket(str(root), path), "/", {"Host": "h"})
    assert failure.value.refused
    assert upstream.connections == 0


async def test_a_chunked_body_arrives_without_its_framing():
    async def answer(head, reader, writer):
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(b"6\r\n world\r\n0\r\n\r\n")
    upstream = Upstream(answer)
    port = await upstream.start()
    pool = UpstreamPool()
    exchange = await get(pool, port)
    assert await asyncio.wait_for(exchange.read(), 5) == b"hello world"
    exchange = await get(pool, port)  # the connection stayed in step
    assert await asyncio.wait_for(exchange.read(), 5) == b"hello world"
    assert upstream.connections == 1
    await pool.close()


async def test_a_body_without_length_ends_with_the_connection():
    async def answer(head, reader, writer):
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end")
        await writer.drain()
        return False
    port = await Upstream(answer).start()
    exchange = await get(UpstreamPool(), port)
    assert await asyncio.wait_for(exchange.read(), 5) == b"until the end"


async def test_head_and_204_answers_have_no_body_and_keep_the_connection():
    async def answer(head, reader, writer):
        if head.startswith(b"HEAD"):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        else:
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
    upstream = Upstream(answer)
    port = await upstream.start()
    pool = UpstreamPool()
    exchange = await get(pool, port, "HEAD")
    assert exchange.status == 200 and not exchange.expects_body and await exchange.read() == b""
    exchange = await get(pool, port)
    assert exchange.status == 204 and await exchange.read() == b""
    exchange = await get(pool, port, "HEAD")
    assert exchange.status == 200
    assert upstream.connections == 1
    await pool.close()


async def test_informational_answers_are_skipped():
    async def answer(head, reader, writer):
        writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    port = await Upstream(answer).start()
    exchange = await get(UpstreamPool(), port)
    assert exchange.status == 200 and "Link" not in exchange.headers and await exchange.read() == b"ok"


async def test_a_connection_dropped_while_idle_is_replaced_without_an_error():
    served: dict[asyncio.StreamWriter, int] = {}  # keyed by the writer itself: ids get reused

    async def answer(head, reader, writer):
        n = served[writer] = served.get(writer, 0) + 1
        if n > 1:
            return False  # a keep-alive connection upstream gave up on just as it was reused
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
    upstream = Upstream(answer)
    port = await upstream.start()
    pool = UpstreamPool()
    for _ in range(3):
        exchange = await get(pool, port)
        assert await exchange.read() == b"ok"
    assert upstream.connections == 3  # each reuse found closed without answer, then retried fresh


async def test_connections_closed_while_idle_leave_the_pool():
    async def answer(head, reader, writer):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        return False  # then closes the idle connection
    port = await Upstream(answer).start()
    pool = UpstreamPool()
    assert await (await get(pool, port)).read() == b"ok"
    for _ in range(100):
        if not pool._idle:
            break
        await asyncio.sleep(0.01)
    assert pool._idle == {}  # nothing kept for a target whose connections all closed


async def test_uploads_with_and_without_a_length_reach_upstream():
    async def answer(head, reader, writer):
        if b"Content-Length: 11" in head:
            body = await reader.readexactly(11)
        else:
            assert b"Transfer-Encoding: chunked" in head
            body = b""
            while (size := int((await reader.readuntil(b"\r\n"))[:-2], 16)):
                body += (await reader.readexactly(size + 2))[:-2]
            await reader.readuntil(b"\r\n")
        writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    async def pieces():
        for piece in (b"hello", b"", b" world"):
            yield piece

    port = await Upstream(answer).start()
    pool = UpstreamPool()
    exchange = await get(pool, port, "PUT", body=pieces(), body_length=11)
    assert exchange.status == 201 and await exchange.read() == b"hello world"
    exchange = await get(pool, port, "POST", body=pieces())
    assert exchange.status == 201 and await exchange.read() == b"hello world"
    await pool.close()


async def test_a_full_receiver_pauses_reading_until_drained():
    body = b"z" * (4 * 1024 * 1024)
    port = await Upstream(fixed(body)).start()
    pool = UpstreamPool()
    exchange = await get(pool, port)
    sink = Collect(full=True)  # asks for a pause after every chunk
    full_sink = Collect.__call__

    def sink_call(chunk, _sink=sink):
        full_sink(_sink, chunk)
        return True

    async def drain():
        await sink.drain()

    await asyncio.wait_for(exchange.relay(sink_call, drain), 5)
    assert bytes(sink.data) == body
    assert sink.drains >= 2  # paused, drained, resumed, more than once
    await pool.close()


async def test_a_body_cut_off_midway_raises():
    async def answer(head, reader, writer):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"a" * 1000)
        await writer.drain()
        return False
    port = await Upstream(answer).start()
    exchange = await get(UpstreamPool(), port)
    sink = Collect()
    with pytest.raises(UpstreamError, match="closed"):
        await asyncio.wait_for(exchange.relay(sink, sink.drain), 5)


async def test_a_receiver_that_went_away_stops_the_relay():
    port = await Upstream(fixed(b"q" * 1_000_000)).start()
    exchange = await get(UpstreamPool(), port)

    def gone(chunk):
        raise ConnectionResetError("the client closed the connection")

    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(exchange.relay(gone, Collect().drain), 5)


async def test_a_connection_closed_before_the_request_went_out_fails_at_once(monkeypatch):
    """Docker's port proxy accepts and then closes at once while the container is not
    up; seen before the request is written, that close must still end the exchange."""
    async def hang_up(head, reader, writer):
        return False

    upstream = Upstream(hang_up)
    upstream._serve = lambda reader, writer: writer.close()  # closes on accept
    port = await upstream.start()
    pool = UpstreamPool(head_timeout=3)
    connect = pool._connect

    async def slow_connect(key):
        conn = await connect(key)
        await asyncio.sleep(0.05)  # the close arrives meanwhile
        assert conn.closed
        return conn

    monkeypatch.setattr(pool, "_connect", slow_connect)
    with pytest.raises(UpstreamError, match="closed") as failure:
        await get(pool, port)
    assert not isinstance(failure.value, UpstreamTimeout)


async def test_nothing_listening_is_refused_with_its_errno(unused_tcp_port):
    with pytest.raises(UpstreamError) as failure:
        await get(UpstreamPool(), unused_tcp_port)
    assert failure.value.refused and failure.value.errno == errno.ECONNREFUSED


async def test_an_upstream_that_accepts_and_never_answers_times_out():
    async def silent(head, reader, writer):
        await asyncio.sleep(10)
    port = await Upstream(silent).start()
    with pytest.raises(UpstreamTimeout):
        await get(UpstreamPool(head_timeout=0.2), port)


async def test_a_malformed_answer_is_an_error():
    async def answer(head, reader, writer):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: banana\r\n\r\n")
    port = await Upstream(answer).start()
    with pytest.raises(UpstreamError, match="malformed"):
        await get(UpstreamPool(), port)
