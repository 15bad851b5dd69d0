"""Where an agent sends a succeeded job's output: the server over HTTP (remote agents,
with their agent token) or the receiver itself (the embedded agent)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

OUTPUT_PATH = "/api/v1/agent/job-outputs/{node_id}"
CHUNK = 1024 * 1024


class HttpJobOutputSink:
    def __init__(self, server_url: str):
        self.server_url = server_url.rstrip("/")

    async def send(self, agent_token: str, node_id: str, archive: Path | None, error: str = "") -> None:
        url = self.server_url + OUTPUT_PATH.format(node_id=node_id)
        headers = {"Authorization": f"Bearer {agent_token}"}
        # No read timeout: the server answers once the version is stored (every blob
        # uploaded and verified), which takes as long as the output is big; a retry after
        # a timeout would store it twice.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=None)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            if archive is None:
                request = http.post(url, json={"error": error or "no output"}, headers=headers)
            else:
                async def body():
                    with open(archive, "rb") as f:
                        while chunk := await asyncio.to_thread(f.read, CHUNK):
                            yield chunk

                request = http.post(url, data=body(), headers={**headers, "Content-Type": "application/x-tar"})
            async with request as r:
                if r.status != 200:
                    raise RuntimeError(f"output of {node_id}: HTTP {r.status}: {(await r.text())[:300]}")


class InProcessJobOutputSink:
    """The embedded agent's: the same checks as the HTTP endpoint, without HTTP."""

    def __init__(self, receiver):
        self._receiver = receiver

    async def send(self, agent_token: str, node_id: str, archive: Path | None, error: str = "") -> None:
        await self._receiver.receive(agent_token, node_id, archive, error)
