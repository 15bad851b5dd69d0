"""AgentLink over HTTP: the agent's side of ``/api/v1/agent/*``.

Errors come back as ``AgentLinkError`` carrying the server's message (its error
format is ``{"error": {"code", "message", "details"}}``); a heartbeat refused with 401
raises ``AgentTokenRejected``, so the agent can say that it must be registered again.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import orjson

from remotegpu.adapters.fleet.wire import reply_from_dict, report_to_dict
from remotegpu.application.fleet.agent_protocol import HeartbeatReply, HostReport
from remotegpu.application.fleet.ports import AgentLinkError, AgentTokenRejected

REGISTER_PATH = "/api/v1/agent/register"
HEARTBEAT_PATH = "/api/v1/agent/heartbeat"
WAIT_PATH = "/api/v1/agent/wait"
METRICS_PATH = "/api/v1/agent/metrics"
DEFAULT_TIMEOUT_SECONDS = 30.0


class HttpAgentLink:
    """AgentLink to ``server_url`` (e.g. ``https://gpu.example.com``).

    Without a ``session`` it opens its own on first use and closes it in ``close()``
    (or ``async with``); a given session is left for its owner to close.
    """

    def __init__(self, server_url: str, session: aiohttp.ClientSession | None = None, *,
                 timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        if not server_url.startswith(("http://", "https://")):
            raise ValueError(f"server URL must start with http:// or https://, got {server_url!r}")
        self.server_url = server_url.rstrip("/")
        self._session = session
        self._owns_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def register(self, join_token: str, name: str, report: HostReport) -> tuple[str, str]:
        body = {"join_token": join_token, "name": name, "report": report_to_dict(report)}
        data = await self._post(REGISTER_PATH, body, what="registration")
        host_id, token = (data.get("host_id"), data.get("agent_token")) if isinstance(data, dict) else (None, None)
        if not (isinstance(host_id, str) and host_id and isinstance(token, str) and token):
            raise AgentLinkError(f"registration: the server's answer lacks host_id/agent_token: {data!r:.200}")
        return host_id, token

    async def heartbeat(self, agent_token: str, report: HostReport) -> HeartbeatReply:
        data = await self._post(HEARTBEAT_PATH, report_to_dict(report), what="heartbeat",
                                headers={"Authorization": f"Bearer {agent_token}"})
        try:
            return reply_from_dict(data)
        except ValueError as exc:
            raise AgentLinkError(f"heartbeat: the server's answer is not a valid reply: {exc}") from None

    async def wait_for_work(self, agent_token: str, known: dict[str, tuple[str, int]], timeout: float) -> bool:
        body = {"timeout_seconds": max(0.5, min(60.0, timeout)),
                "known": {env_id: {"desired": d, "generation": g} for env_id, (d, g) in known.items()}}
        data = await self._post(WAIT_PATH, body, what="wait", headers={"Authorization": f"Bearer {agent_token}"},
                                timeout=aiohttp.ClientTimeout(total=timeout + 10))
        return bool(data.get("work")) if isinstance(data, dict) else False

    async def send_metrics(self, agent_token: str, rows: list) -> int:
        """One batch of metric rows (see application/monitoring/collector.py), on the
        same session (kept-alive connection) as the heartbeats."""
        data = await self._post(METRICS_PATH, {"samples": rows}, what="metrics",
                                headers={"Authorization": f"Bearer {agent_token}"}, fast_json=True)
        return int(data.get("accepted", 0)) if isinstance(data, dict) else 0

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> "HttpAgentLink":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ----------------------------------------------------------------------------------

    async def _post(self, path: str, body: dict[str, Any], *, what: str,
                    headers: dict[str, str] | None = None, timeout: aiohttp.ClientTimeout | None = None,
                    fast_json: bool = False) -> Any:
        """POST ``body`` as JSON; ``fast_json``: encoded by orjson (metric batches: plain
        lists of numbers and strings, a tenth of ``json.dumps``' time)."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        url = self.server_url + path
        try:
            kw: dict[str, Any] = ({"data": orjson.dumps(body), "headers": {**(headers or {}), "Content-Type": "application/json"}}
                                  if fast_json else {"json": body, "headers": headers})
            async with self._session.post(url, timeout=timeout or self._timeout, **kw) as response:
                text = await response.text()
                status = response.status
        except asyncio.TimeoutError:
            raise AgentLinkError(f"{what}: {url} did not answer in time") from None
        except aiohttp.ClientError as exc:
            raise AgentLinkError(f"{what}: cannot reach {url}: {exc}") from None
        if status >= 300:
            code, message = _error_of(text, status)
            error = f"{what} refused by the server ({status} {code}): {message}"
            if status == 401 and path in (HEARTBEAT_PATH, WAIT_PATH, METRICS_PATH):
                raise AgentTokenRejected(error, status=status, code=code)
            raise AgentLinkError(error, status=status, code=code)
        try:
            return json.loads(text)
        except ValueError:
            raise AgentLinkError(f"{what}: the server answered {status} with no JSON: {text[:200]!r}") from None


def _error_of(text: str, status: int) -> tuple[str, str]:
    """(code, message) from the server's ``{"error": {...}}``, or from the raw body."""
    try:
        error = json.loads(text).get("error")
        if isinstance(error, dict) and error.get("message"):
            message = str(error["message"])
            details = error.get("details")
            if details:
                message = f"{message} {json.dumps(details)[:500]}"
            return str(error.get("code") or "error"), message
    except (ValueError, AttributeError):
        pass
    return "http_error", text.strip()[:300] or "(empty answer)"
