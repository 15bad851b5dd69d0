"""JobLogStore on the server's disk: ``<data dir>/job-logs/<job id>/<node key>.log``.

Every replica must see the same directory (one server, or a shared volume); the
object-storage adapter replaces this one when the storage context lands (the port
is four calls). Files are 0600 in a 0700 tree, like the rest of the data dir.
``MAX_LOG_BYTES`` per node: beyond it, bytes are dropped and the log says so once.
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

MAX_LOG_BYTES = 256 * 1024 * 1024
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,100}$")


class FileJobLogStore:
    def __init__(self, root: Path):
        self._root = Path(root)
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    def _path(self, job_id: str, node_key: str) -> Path:
        if not _SAFE.match(job_id) or not _SAFE.match(node_key) or ".." in job_id or ".." in node_key:
            raise ValueError("bad job id or node key")
        return self._root / job_id / f"{node_key}.log"

    async def append(self, job_id: str, node_key: str, offset: int, data: bytes) -> int:
        path = self._path(job_id, node_key)
        async with self._locks.setdefault((job_id, node_key), asyncio.Lock()):
            return await asyncio.to_thread(self._append, path, offset, data)

    def _append(self, path: Path, offset: int, data: bytes) -> int:
        size = path.stat().st_size if path.exists() else 0
        if offset > size:
            return size  # a gap: refuse, the agent resends from ``size``
        data = data[size - offset:]
        if not data:
            return size
        if size + len(data) > MAX_LOG_BYTES:
            data = data[: max(0, MAX_LOG_BYTES - size)]
        if not data:
            return size
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        return size + len(data)

    async def size(self, job_id: str, node_key: str) -> int:
        path = self._path(job_id, node_key)
        return path.stat().st_size if path.exists() else 0

    async def read(self, job_id: str, node_key: str, offset: int = 0, limit: int | None = None) -> bytes:
        path = self._path(job_id, node_key)
        if not path.exists():
            return b""

        def read() -> bytes:
            with open(path, "rb") as f:
                f.seek(max(0, offset))
                return f.read() if limit is None else f.read(limit)

        return await asyncio.to_thread(read)

    async def nodes(self, job_id: str) -> list[str]:
        if not _SAFE.match(job_id):
            return []
        folder = self._root / job_id
        if not folder.is_dir():
            return []
        return sorted(p.name[:-4] for p in folder.iterdir() if p.name.endswith(".log"))


    async def delete(self, job_id: str) -> None:
        if not _SAFE.match(job_id):
            return
        folder = self._root / job_id

        def remove() -> None:
            if folder.is_dir():
                for p in folder.iterdir():
                    p.unlink(missing_ok=True)
                folder.rmdir()

        await asyncio.to_thread(remove)


class InMemoryJobLogStore:
    """The same port in memory (tests, ``persistence=memory``)."""

    def __init__(self) -> None:
        self._logs: dict[tuple[str, str], bytearray] = {}

    async def append(self, job_id: str, node_key: str, offset: int, data: bytes) -> int:
        log = self._logs.setdefault((job_id, node_key), bytearray())
        if offset <= len(log):
            log += data[len(log) - offset:]
        return len(log)

    async def size(self, job_id: str, node_key: str) -> int:
        return len(self._logs.get((job_id, node_key), b""))

    async def read(self, job_id: str, node_key: str, offset: int = 0, limit: int | None = None) -> bytes:
        log = bytes(self._logs.get((job_id, node_key), b""))
        return log[offset:] if limit is None else log[offset: offset + limit]

    async def nodes(self, job_id: str) -> list[str]:
        return sorted(k for j, k in self._logs if j == job_id)

    async def delete(self, job_id: str) -> None:
        for key in [k for k in self._logs if k[0] == job_id]:
            del self._logs[key]
