"""The SSRF-safe webhook sender (aiohttp).

The destination is checked on the address actually connected to: the connector's
resolver resolves the host once, refuses the whole answer if any address is not
allowed, and aiohttp connects to exactly those addresses — there is no second
lookup an attacker's DNS could answer differently (DNS rebinding). The URL itself
is untouched, so the Host header and TLS SNI/certificate checks use the name.
IP literals skip resolvers in aiohttp, so they are checked before the request.
Redirects are never followed; response bodies are read up to a cap.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from remotegpu.application.webhooks.ports import SendResult
from remotegpu.domain.shared.errors import InvalidInput
from remotegpu.domain.webhooks.addresses import AddressPolicy, parse_url

TIMEOUT_SECONDS = 15.0
MAX_RESPONSE_BYTES = 4096
USER_AGENT = "RemoteGPU-Webhooks/1"


class AddressRefusedError(OSError):
    """Raised by the resolver; aiohttp wraps OSErrors, the sender finds it in the chain."""


class SafeResolver(AbstractResolver):
    def __init__(self, policy: AddressPolicy, inner: AbstractResolver | None = None):
        self._policy = policy
        self._inner = inner or aiohttp.ThreadedResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        answers = await self._inner.resolve(host, port, family)
        for answer in answers:
            ip = ipaddress.ip_address(answer["host"].split("%", 1)[0])
            if not self._policy.is_allowed(ip):
                # Not the address itself: a tenant must not learn internal DNS answers from the log.
                raise AddressRefusedError(f"{host} resolves to an address webhooks may not reach (not a public address)")
        return answers

    async def close(self) -> None:
        await self._inner.close()


def _refusal_in(exc: BaseException) -> AddressRefusedError | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, AddressRefusedError):
            return seen
        seen = seen.__cause__ or seen.__context__ or getattr(seen, "os_error", None)
        if seen is exc:
            return None
    return None


def parse_retry_after(value: str | None, now: datetime) -> timedelta | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return timedelta(seconds=int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(when - now, timedelta(0))


class AiohttpWebhookSender:
    """Satisfies ``application.webhooks.ports.WebhookSender``. One pooled session per event loop."""

    def __init__(self, policy: AddressPolicy, *, resolver: AbstractResolver | None = None,
                 timeout: float = TIMEOUT_SECONDS, max_response_bytes: int = MAX_RESPONSE_BYTES, pool_size: int = 200):
        self._policy = policy
        self._inner_resolver = resolver
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_response = max_response_bytes
        self._pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                resolver=SafeResolver(self._policy, self._inner_resolver), limit=self._pool_size, limit_per_host=20,
            )
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout, trust_env=False,
                                                  headers={"User-Agent": USER_AGENT})
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, url: str, headers: dict[str, str], body: bytes) -> SendResult:
        try:
            parsed = parse_url(url)
            if parsed.literal is not None:
                self._policy.check(parsed.literal, parsed.host)
        except InvalidInput as exc:
            return SendResult(None, error=f"refused: {exc.message}", refused=True)
        try:
            async with self._client().post(url, data=body, headers=headers, allow_redirects=False) as resp:
                text = await self._read_capped(resp)
                error = ""
                if 300 <= resp.status < 400:
                    error = f"redirect to {resp.headers.get('Location', '?')!s:.200} not followed"
                elif not 200 <= resp.status < 300:
                    error = f"HTTP {resp.status}"
                retry_after = parse_retry_after(resp.headers.get("Retry-After"), datetime.now(timezone.utc))
                return SendResult(resp.status, text, retry_after, error)
        except asyncio.TimeoutError:
            return SendResult(None, error=f"timed out after {self._timeout.total:.0f} s")
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            refusal = _refusal_in(exc)
            if refusal is not None:
                return SendResult(None, error=f"refused: {refusal}", refused=True)
            return SendResult(None, error=f"{type(exc).__name__}: {exc}"[:500])

    async def _read_capped(self, resp: aiohttp.ClientResponse) -> str:
        chunks: list[bytes] = []
        size = 0
        while size < self._max_response:
            chunk = await resp.content.read(self._max_response - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks).decode("utf-8", "replace")


class StaticResolver(AbstractResolver):
    """Names answered from a table (tests and the benchmark: a 'DNS' they control)."""

    def __init__(self, table: dict[str, str], fallback: AbstractResolver | None = None):
        self._table = table
        self._fallback = fallback

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        address = self._table.get(host.rstrip("."))
        if address is None:
            if self._fallback is not None:
                return await self._fallback.resolve(host, port, family)
            raise OSError(f"unknown host {host}")
        fam = socket.AF_INET6 if ":" in address else socket.AF_INET
        result: Any = {"hostname": host, "host": address, "port": port, "family": fam, "proto": 0,
                       "flags": socket.AI_NUMERICHOST}
        return [result]

    async def close(self) -> None:
        pass
