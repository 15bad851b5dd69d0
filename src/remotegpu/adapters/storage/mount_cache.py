"""The host's cache of dataset/model versions that environments mount read-only.

Content-addressed twice: every blob is one file ``blobs/<sha256>`` (downloaded once per
host, verified), every version one tree ``trees/<manifest digest>/`` of hard links to
those blobs (materialized once per host; ten versions sharing a file share its bytes).
A tree appears by an atomic rename, so a crash mid-download leaves no half tree behind.

Eviction is least-recently-used over trees, down to ``max_bytes`` of blob bytes, and
never touches a tree in ``in_use`` (what running environments mount); a blob goes when
no tree links it any more (its link count is back to one).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Awaitable, Callable, Iterable, Protocol

if TYPE_CHECKING:
    from remotegpu.application.environments.ports import RuntimeSpec

log = logging.getLogger(__name__)

#: fetch(sha256, destination): write the blob's bytes to ``destination`` (a new file).
Fetch = Callable[[str, Path], Awaitable[None]]
#: progress(done_bytes, total_bytes) while a tree is materialized.
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class CachedFile:
    path: str
    size: int
    sha256: str


def tree_id(files: Iterable[CachedFile]) -> str:
    """The version's identity on the host: the digest of its manifest."""
    manifest = sorted((f.path, f.size, f.sha256) for f in files)
    return hashlib.sha256(json.dumps(manifest, separators=(",", ":")).encode()).hexdigest()


class ChecksumMismatch(Exception):
    pass



class MountCache:
    def __init__(self, root: Path, max_bytes: int, fetch: Fetch | None = None):
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.fetch = fetch
        self._blobs = self.root / "blobs"
        self._trees = self.root / "trees"
        self._tmp = self.root / "tmp"
        self._lock = asyncio.Lock()
        self._building: dict[str, asyncio.Future] = {}

    def path_of(self, tid: str) -> Path:
        return self._trees / tid

    def _marker(self, tid: str) -> Path:
        return self._trees / f"{tid}.json"

    def cached(self, tid: str) -> bool:
        return self._marker(tid).exists()

    async def materialize(self, files: list[CachedFile], *, in_use: set[str] = frozenset(),
                          progress: Progress | None = None, fetch: Fetch | None = None) -> Path:
        """The version's read-only tree on this host (downloaded now unless cached); then
        the cache is trimmed to ``max_bytes`` (sparing ``in_use`` and this tree)."""
        tid = tree_id(files)
        if self.cached(tid):
            await asyncio.to_thread(self._touch, tid)
            return self.path_of(tid)
        pending = self._building.get(tid)
        if pending is not None:  # another environment asked for it a moment ago
            return await asyncio.shield(pending)
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._building[tid] = future
        try:
            async with self._lock:  # one build at a time per host: eviction never sweeps a blob about to be linked
                path = await self._build(tid, files, progress, fetch or self.fetch)
            future.set_result(path)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody waited
            raise
        finally:
            del self._building[tid]
        await self.evict(set(in_use) | {tid})
        return path

    async def _build(self, tid: str, files: list[CachedFile], progress: Progress | None, fetch: Fetch) -> Path:
        for d in (self._blobs, self._trees, self._tmp):
            d.mkdir(parents=True, exist_ok=True)
        total = sum(f.size for f in files)
        done = 0
        for digest in sorted({f.sha256 for f in files}):
            size = next(f.size for f in files if f.sha256 == digest)
            blob = self._blobs / digest
            if not blob.exists():
                tmp = self._tmp / uuid.uuid4().hex
                try:
                    await fetch(digest, tmp)
                    actual = await asyncio.to_thread(_sha256_of, tmp)
                    if actual != digest:
                        raise ChecksumMismatch(f"blob {digest}: received bytes hash to {actual}")
                    os.chmod(tmp, 0o444)
                    os.replace(tmp, blob)
                finally:
                    tmp.unlink(missing_ok=True)
            done += size * sum(1 for f in files if f.sha256 == digest)
            if progress:
                progress(done, total)
        staging = self._tmp / f"tree-{uuid.uuid4().hex}"

        def link() -> None:
            for f in files:
                target = staging / f.path
                target.parent.mkdir(parents=True, exist_ok=True)
                os.link(self._blobs / f.sha256, target)
            staging.mkdir(parents=True, exist_ok=True)  # an empty version is an empty directory
            try:
                os.rename(staging, self.path_of(tid))
            except OSError:
                if not self.path_of(tid).exists():
                    raise
                shutil.rmtree(staging, ignore_errors=True)  # built meanwhile by another process
            self._marker(tid).write_text(json.dumps({"bytes": sum(f.size for f in files), "files": len(files)}))
            self._touch(tid)

        try:
            await asyncio.to_thread(link)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        log.info("storage cache: version %s materialized (%d files, %d bytes)", tid[:12], len(files), total)
        return self.path_of(tid)

    def _touch(self, tid: str) -> None:
        now = time.time()
        os.utime(self._marker(tid), (now, now))

    def usage(self) -> int:
        """Bytes the cache holds (each blob once)."""
        if not self._blobs.exists():
            return 0
        return sum(p.stat().st_size for p in self._blobs.iterdir())

    def trees(self) -> list[str]:
        """Cached versions, least recently used first."""
        if not self._trees.exists():
            return []
        markers = sorted(self._trees.glob("*.json"), key=lambda p: p.stat().st_mtime)
        return [m.stem for m in markers]

    async def evict(self, in_use: set[str]) -> list[str]:
        """Drop least-recently-used trees not in ``in_use`` until the blobs fit ``max_bytes``."""
        async with self._lock:
            return await asyncio.to_thread(self._evict, set(in_use))

    def _evict(self, in_use: set[str]) -> list[str]:
        removed: list[str] = []
        self._sweep_blobs()
        for tid in self.trees():
            if self.usage() <= self.max_bytes:
                break
            if tid in in_use:
                continue
            self._marker(tid).unlink(missing_ok=True)  # first: a half-removed tree never reads as cached
            shutil.rmtree(self.path_of(tid), ignore_errors=True)
            removed.append(tid)
            self._sweep_blobs()
        if removed:
            log.info("storage cache: evicted %d version(s); %d bytes held (limit %d)", len(removed), self.usage(), self.max_bytes)
        return removed

    def _sweep_blobs(self) -> None:
        if not self._blobs.exists():
            return
        for blob in self._blobs.iterdir():
            if blob.stat().st_nlink <= 1:  # no tree links it
                blob.unlink(missing_ok=True)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


#: How an agent's observed message starts while it downloads an environment's mounts
#: (the server's agent service knows the same prefix).
MOUNTING = "mounting data"


class VersionSource(Protocol):
    """Where an agent gets a version's manifest and blobs (the server, by its agent token)."""

    async def manifest(self, agent_token: str, repository_id: str, version: int) -> list[CachedFile]: ...

    async def fetch(self, agent_token: str, repository_id: str, sha256: str, destination: Path) -> None: ...


class DataMountMaterializer:
    """The agent's side of mounts: before an environment starts, each of its
    ``spec.data_mounts`` is materialized in the host cache and becomes a read-only bind.
    Which trees each environment mounts is kept in <cache>/mounts.json, so that an agent
    restarted while environments run still knows what it must not evict."""

    def __init__(self, cache: MountCache, source: VersionSource, *, background: bool = True):
        self.cache = cache
        self.source = source
        # Downloads run beside the agent's loop (its heartbeats go on meanwhile): env id →
        # the task materializing its mounts. ``background=False``: inline (tests).
        self.background = background
        self._tasks: dict[str, tuple[tuple, asyncio.Task]] = {}
        self._progress: dict[str, str] = {}
        self._state = cache.root / "mounts.json"
        try:
            self._trees: dict[str, list[str]] = json.loads(self._state.read_text())
        except (OSError, ValueError):
            self._trees = {}

    def in_use(self, running: set[str]) -> set[str]:
        return {tid for env_id in running for tid in self._trees.get(env_id, [])}

    async def prepare(self, spec: "RuntimeSpec", agent_token: str, running: set[str]) -> "RuntimeSpec | None":
        """The spec with its mounts bound, once every version is in the cache; None while
        one is still downloading (in the background): the agent tries again on its next
        beat, and its heartbeats never wait for a download."""
        if not spec.data_mounts:
            return spec
        if not self.background:
            return await self._prepare(spec, agent_token, running)
        key = tuple(spec.data_mounts)
        found = self._tasks.get(spec.env_id)
        if found is not None and found[0] == key:
            task = found[1]
            if not task.done():
                return None
            del self._tasks[spec.env_id]
            return task.result()  # a failure raises here: the agent reports it
        if found is not None:
            found[1].cancel()
        task = asyncio.ensure_future(self._prepare(spec, agent_token, running))
        self._tasks[spec.env_id] = (key, task)
        await asyncio.sleep(0)
        try:
            # Cached versions are ready at once: no beat is lost waiting for the next one.
            return await asyncio.wait_for(asyncio.shield(task), timeout=2.0)
        except asyncio.TimeoutError:
            log.info("environment %s: its mounts are downloading; it starts once they are cached", spec.env_id,
                     extra={"env_id": spec.env_id})
            return None
        finally:
            if task.done():
                self._tasks.pop(spec.env_id, None)

    async def _prepare(self, spec: "RuntimeSpec", agent_token: str, running: set[str]) -> "RuntimeSpec":
        try:
            return await self._materialize(spec, agent_token, running)
        finally:
            self._progress.pop(spec.env_id, None)

    def progress(self) -> dict[str, str]:
        """env id → what its mounts' download is at ("mounting data /datasets/x: 40% (…)"),
        while one downloads; the agent reports it as the environment's observed message."""
        return dict(self._progress)

    async def _materialize(self, spec: "RuntimeSpec", agent_token: str, running: set[str]) -> "RuntimeSpec":
        binds: list[tuple[str, str]] = []
        trees: list[str] = []
        for mount in spec.data_mounts:
            files = await self.source.manifest(agent_token, mount.repository_id, mount.version)
            tid = tree_id(files)
            trees.append(tid)
            started = time.monotonic()

            def progress(done: int, total: int, *, target: str = mount.target) -> None:
                pct = 100 * done // max(total, 1)
                # In steps of 10 %: the server turns each new line into an event.
                line = f"{MOUNTING} {target}: {pct // 10 * 10}% ({done / 2**20:.0f} of {total / 2**20:.0f} MiB)"
                if self._progress.get(spec.env_id, "").split(" (")[0] != line.split(" (")[0]:
                    self._progress[spec.env_id] = line
                    log.info("environment %s: %s %d%% (%d of %d bytes)", spec.env_id, target, pct, done, total,
                             extra={"env_id": spec.env_id})

            async def fetch(digest: str, destination: Path, *, repo: str = mount.repository_id) -> None:
                await self.source.fetch(agent_token, repo, digest, destination)

            path = await self.cache.materialize(files, in_use=self.in_use(running) | set(trees), progress=progress, fetch=fetch)
            log.info("environment %s: %s ready in %.2fs (version %d)", spec.env_id, mount.target, time.monotonic() - started,
                     mount.version, extra={"env_id": spec.env_id})
            binds.append((str(path), mount.target))
        self._trees[spec.env_id] = trees
        self._trees = {e: t for e, t in self._trees.items() if e in running or e == spec.env_id}
        await asyncio.to_thread(self._save)
        return replace(spec, read_only_binds=tuple(binds))

    def _save(self) -> None:
        self.cache.root.mkdir(parents=True, exist_ok=True)
        tmp = self._state.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._trees))
        os.replace(tmp, self._state)
