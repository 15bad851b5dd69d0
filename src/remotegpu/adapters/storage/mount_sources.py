"""Where an agent gets the versions it mounts: the server over HTTP (remote agents, with
their agent token) or the storage service itself (the embedded agent)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from remotegpu.adapters.storage.mount_cache import CachedFile

MANIFEST_PATH = "/api/v1/agent/storage/{repository_id}/versions/{version}"
BLOB_PATH = "/api/v1/agent/storage/{repository_id}/blobs/{sha256}"


class HttpVersionSource:
    def __init__(self, server_url: str):
        self.server_url = server_url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=300))
        return self._session

    async def manifest(self, agent_token: str, repository_id: str, version: int) -> list[CachedFile]:
        url = self.server_url + MANIFEST_PATH.format(repository_id=repository_id, version=version)
        async with self._http().get(url, headers={"Authorization": f"Bearer {agent_token}"}) as r:
            if r.status != 200:
                raise RuntimeError(f"manifest of {repository_id} v{version}: HTTP {r.status}")
            return [CachedFile(f["path"], f["size"], f["sha256"]) for f in (await r.json())["files"]]

    async def fetch(self, agent_token: str, repository_id: str, sha256: str, destination: Path) -> None:
        url = self.server_url + BLOB_PATH.format(repository_id=repository_id, sha256=sha256)
        async with self._http().get(url, headers={"Authorization": f"Bearer {agent_token}"}) as r:
            if r.status != 200:
                raise RuntimeError(f"blob {sha256[:12]}: HTTP {r.status}")
            with open(destination, "wb") as out:
                async for chunk in r.content.iter_chunked(1024 * 1024):
                    await asyncio.to_thread(out.write, chunk)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class InProcessVersionSource:
    """The embedded agent's: the same checks as the HTTP endpoints, without HTTP."""

    def __init__(self, agent_service, mounts):
        self._agents = agent_service
        self._mounts = mounts

    async def manifest(self, agent_token: str, repository_id: str, version: int) -> list[CachedFile]:
        await self._agents.agent_may_read(agent_token, repository_id)
        return [CachedFile(f.path, f.size, f.sha256) for f in await self._mounts.manifest(repository_id, version)]

    async def fetch(self, agent_token: str, repository_id: str, sha256: str, destination: Path) -> None:
        await self._agents.agent_may_read(agent_token, repository_id)
        chunks = await self._mounts.open_blob(sha256)
        with open(destination, "wb") as out:
            async for chunk in chunks:
                await asyncio.to_thread(out.write, chunk)
