"""A client of ``guacd`` (Apache Guacamole's proxy daemon): the Guacamole protocol's
handshake for a VNC connection, and a reader that cuts guacd's byte stream into whole
instructions for the browser's websocket tunnel (``entrypoints/http/desktop.py``).

The protocol (https://guacamole.apache.org/doc/gug/guacamole-protocol.html): an
instruction is ``LENGTH.VALUE,LENGTH.VALUE,...;`` where LENGTH counts Unicode characters
(not bytes). The handshake: ``select,vnc`` → guacd answers ``args`` (the names of the
parameters it wants, the first one its protocol version) → the client states its
``size``, ``audio``, ``video``, ``image`` and ``timezone`` and sends ``connect`` with a
value for every name → guacd answers ``ready,<connection id>``.
"""

from __future__ import annotations

import asyncio
import codecs
from dataclasses import dataclass, field

#: The protocol version this client speaks (guacd 1.3 asks for it as the first arg).
PROTOCOL_VERSION = "VERSION_1_3_0"
HANDSHAKE_SECONDS = 15.0
_READ_CHUNK = 65536
#: One instruction may not grow past this (a 4K PNG in base64 is well under it).
MAX_INSTRUCTION_CHARS = 16 * 1024 * 1024


class GuacdError(Exception):
    """guacd is unreachable, or refused the connection during the handshake."""


def encode(*elements: str) -> str:
    return ",".join(f"{len(e)}.{e}" for e in elements) + ";"


def parse(text: str) -> tuple[list[list[str]], str]:
    """The whole instructions at the front of ``text`` and what remains of it (an
    unfinished instruction); ``ValueError`` when it is not the Guacamole protocol."""
    done: list[list[str]] = []
    start = 0
    pos = 0
    elements: list[str] = []
    n = len(text)
    while pos < n:
        dot = text.find(".", pos)
        if dot == -1:
            if n - pos > 12:
                raise ValueError("malformed instruction: no length")
            break
        length = int(text[pos:dot])  # ValueError when not a number
        end = dot + 1 + length
        if end >= n:
            break
        elements.append(text[dot + 1:end])
        term = text[end]
        if term == ";":
            done.append(elements)
            elements = []
            start = pos = end + 1
        elif term == ",":
            pos = end + 1
        else:
            raise ValueError("malformed instruction: bad terminator")
    return done, text[start:]


@dataclass
class GuacdConnection:
    """One connection to guacd, after a successful handshake."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    connection_id: str
    _decoder: codecs.IncrementalDecoder = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")())
    _pending: str = ""

    async def read_instructions(self) -> str | None:
        """The next whole instructions guacd sent, as protocol text (one or more
        instructions, never a partial one); None when guacd closed the connection."""
        while True:
            data = await self.reader.read(_READ_CHUNK)
            if not data:
                return None
            self._pending += self._decoder.decode(data)
            last = self._last_terminator()
            if last >= 0:
                out, self._pending = self._pending[: last + 1], self._pending[last + 1:]
                return out
            if len(self._pending) > MAX_INSTRUCTION_CHARS:
                raise GuacdError("guacd sent an instruction that is too long")

    def _last_terminator(self) -> int:
        """The index of the last ``;`` that ends an instruction in the pending text, -1 if
        none. Values may contain ``;``, so the text is walked by element lengths."""
        _, rest = parse(self._pending)
        return len(self._pending) - len(rest) - 1

    async def send(self, text: str) -> None:
        self.writer.write(text.encode())
        await self.writer.drain()

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (OSError, ConnectionError):
            pass


async def _read_one(reader: asyncio.StreamReader, decoder: codecs.IncrementalDecoder, buffer: list[str]) -> list[str]:
    while True:
        done, rest = parse(buffer[0])
        if done:
            first = done[0]
            consumed = len(encode(*first))
            buffer[0] = buffer[0][consumed:]
            return first
        data = await reader.read(_READ_CHUNK)
        if not data:
            raise GuacdError("guacd closed the connection during the handshake")
        buffer[0] += decoder.decode(data)


async def connect_vnc(guacd_host: str, guacd_port: int, *, hostname: str, port: int, password: str,
                      width: int, height: int, dpi: int = 96, timezone: str = "",
                      extra: dict[str, str] | None = None) -> GuacdConnection:
    """A guacd connection to the VNC server at ``hostname:port``, handshake done."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(guacd_host, guacd_port), HANDSHAKE_SECONDS)
    except (OSError, asyncio.TimeoutError) as e:
        raise GuacdError(f"guacd at {guacd_host}:{guacd_port} does not answer: {e}") from None
    decoder = codecs.getincrementaldecoder("utf-8")()
    buffer = [""]
    values = {"hostname": hostname, "port": str(port), "password": password, **(extra or {})}
    try:
        async def handshake() -> str:
            writer.write(encode("select", "vnc").encode())
            await writer.drain()
            args = await _read_one(reader, decoder, buffer)
            if not args or args[0] != "args":
                raise GuacdError(f"guacd answered {args[:1]} to select")
            names = args[1:]
            writer.write((encode("size", str(width), str(height), str(dpi)) + encode("audio") + encode("video")
                          + encode("image", "image/png", "image/jpeg", "image/webp")
                          + (encode("timezone", timezone) if timezone else "")).encode())
            connect = ["connect"]
            for name in names:
                connect.append(PROTOCOL_VERSION if name.startswith("VERSION_") else values.get(name, ""))
            writer.write(encode(*connect).encode())
            await writer.drain()
            ready = await _read_one(reader, decoder, buffer)
            if not ready or ready[0] != "ready":
                detail = ready[1] if len(ready) > 1 else ""
                raise GuacdError(f"guacd refused the connection: {ready[:1]} {detail}".strip())
            return ready[1] if len(ready) > 1 else ""

        try:
            connection_id = await asyncio.wait_for(handshake(), HANDSHAKE_SECONDS)
        except asyncio.TimeoutError:
            raise GuacdError("guacd did not finish the handshake in time") from None
        except ValueError as e:
            raise GuacdError(f"guacd spoke no Guacamole protocol: {e}") from None
    except BaseException:
        writer.close()
        raise
    conn = GuacdConnection(reader, writer, connection_id, decoder)
    conn._pending = buffer[0]
    return conn
