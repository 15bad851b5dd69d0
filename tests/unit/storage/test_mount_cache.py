"""The host cache of mounted versions: once per host, shared blobs, verified, LRU under a
size, never evicting what a running environment mounts."""

from __future__ import annotations

import hashlib
import os
import time

import pytest

from remotegpu.adapters.storage.mount_cache import CachedFile, ChecksumMismatch, MountCache, tree_id


class Source:
    def __init__(self, blobs: dict[str, bytes]):
        self.blobs = blobs
        self.fetched: list[str] = []

    async def fetch(self, digest, destination):
        self.fetched.append(digest)
        destination.write_bytes(self.blobs[digest])


def version(files: dict[str, bytes], source: Source) -> list[CachedFile]:
    out = []
    for path, data in files.items():
        digest = hashlib.sha256(data).hexdigest()
        source.blobs[digest] = data
        out.append(CachedFile(path, len(data), digest))
    return out


async def test_materialized_once_shared_blobs_linked_and_cached_second_time(tmp_path):
    src = Source({})
    cache = MountCache(tmp_path / "cache", 10**9, src.fetch)
    v1 = version({"a/x.bin": b"x" * 1000, "y.txt": b"y", "copy-of-x": b"x" * 1000}, src)
    v2 = version({"a/x.bin": b"x" * 1000, "y.txt": b"y2"}, src)
    p1 = await cache.materialize(v1)
    assert (p1 / "a/x.bin").read_bytes() == b"x" * 1000 and (p1 / "copy-of-x").read_bytes() == b"x" * 1000
    assert len(src.fetched) == 2  # x once, although two paths hold it
    p2 = await cache.materialize(v2)
    assert len(src.fetched) == 3  # only y2
    assert os.stat(p1 / "a/x.bin").st_ino == os.stat(p2 / "a/x.bin").st_ino  # one copy of the bytes on the host
    assert cache.usage() == 1000 + 1 + 2
    started = time.monotonic()
    assert await cache.materialize(v1) == p1  # cached: nothing fetched, immediate
    assert time.monotonic() - started < 0.5 and len(src.fetched) == 3
    assert p1.name == tree_id(v1)
    assert os.stat(p1 / "y.txt").st_mode & 0o777 == 0o444  # read-only bytes (and bound read-only)


async def test_bytes_that_do_not_match_are_refused_and_nothing_is_cached(tmp_path):
    src = Source({})
    v = version({"f": b"good"}, src)
    src.blobs[v[0].sha256] = b"evil"
    cache = MountCache(tmp_path / "cache", 10**9, src.fetch)
    with pytest.raises(ChecksumMismatch):
        await cache.materialize(v)
    assert not cache.cached(tree_id(v)) and cache.usage() == 0
    assert not list((tmp_path / "cache/tmp").iterdir())


async def test_lru_eviction_never_touches_what_runs(tmp_path):
    src = Source({})
    cache = MountCache(tmp_path / "cache", 2500, src.fetch)
    a = version({"a": b"a" * 1000}, src)
    b = version({"b": b"b" * 1000}, src)
    c = version({"c": b"c" * 1000}, src)
    await cache.materialize(a)
    await cache.materialize(b)
    os.utime(cache._marker(tree_id(a)), (1, 1))  # a is the least recently used ...
    await cache.materialize(c, in_use={tree_id(a)})  # ... but a running environment mounts it
    assert cache.cached(tree_id(a)) and not cache.cached(tree_id(b)) and cache.cached(tree_id(c))
    assert cache.usage() == 2000 and not (tmp_path / "cache/trees" / tree_id(b)).exists()
    # Nothing evictable: the cache may exceed its size rather than pull a mounted tree away.
    d = version({"d": b"d" * 1000}, src)
    await cache.materialize(d, in_use={tree_id(a), tree_id(c)})
    assert all(cache.cached(tree_id(v)) for v in (a, c, d)) and cache.usage() == 3000
    # Once a and c are no longer mounted, the oldest of them goes.
    assert await cache.evict(in_use={tree_id(d)}) and cache.usage() <= 2500


async def test_slow_downloads_run_beside_the_agent_loop(tmp_path):
    import asyncio

    from remotegpu.adapters.storage.mount_cache import DataMountMaterializer
    from remotegpu.application.environments.ports import DataMountSpec, RuntimeSpec

    gate = asyncio.Event()
    data = b"slow bytes"
    digest = hashlib.sha256(data).hexdigest()

    class SlowSource:
        async def manifest(self, token, repository_id, version):
            return [CachedFile("f.txt", len(data), digest)]

        async def fetch(self, token, repository_id, sha256, destination):
            await gate.wait()
            destination.write_bytes(data)

    mounts = DataMountMaterializer(MountCache(tmp_path / "cache", 10**9), SlowSource())
    spec = RuntimeSpec(env_id="e1", image="img", data_mounts=(DataMountSpec("/datasets/d", "dataset", "r1", 1),))
    started = time.monotonic()
    assert await mounts.prepare(spec, "token", {"e1"}) is None  # not ready: the agent's beat goes on
    assert time.monotonic() - started < 5
    assert await mounts.prepare(spec, "token", {"e1"}) is None  # still downloading, not started twice
    gate.set()
    for _ in range(100):
        ready = await mounts.prepare(spec, "token", {"e1"})
        if ready is not None:
            break
        await asyncio.sleep(0.05)
    (host, target), = ready.read_only_binds
    assert target == "/datasets/d" and (tmp_path / "cache/trees").exists() and open(f"{host}/f.txt", "rb").read() == data
    again = await mounts.prepare(spec, "token", {"e1"})  # cached: at once
    assert again.read_only_binds == ready.read_only_binds


async def test_mount_progress_is_reported_as_the_environments_observed_message(tmp_path):
    """While a mount downloads, the agent reports 'mounting data <target>: N%' for the
    environment (the server turns each new step into an event; the console shows it)."""
    import asyncio

    from remotegpu.adapters.fleet.fake_probe import FakeGpuProbe
    from remotegpu.adapters.runtime import InMemoryRuntime
    from remotegpu.adapters.storage.mount_cache import MOUNTING, DataMountMaterializer
    from remotegpu.application.environments.ports import DataMountSpec
    from remotegpu.application.fleet.agent import HostAgent
    from tests.support.agent_fakes import FixedSystem, MemoryCredentials
    from tests.unit.fleet.test_host_agent import FakeLink

    first, second = b"a" * 3000, b"b" * 1000
    files = {hashlib.sha256(d).hexdigest(): d for d in (first, second)}
    gate = asyncio.Event()

    class GatedSource:
        async def manifest(self, token, repository_id, version):
            return [CachedFile("a.bin", len(first), hashlib.sha256(first).hexdigest()),
                    CachedFile("b.bin", len(second), hashlib.sha256(second).hexdigest())]

        async def fetch(self, token, repository_id, sha256, destination):
            if files[sha256] == second:
                await gate.wait()
            destination.write_bytes(files[sha256])

    mounts = DataMountMaterializer(MountCache(tmp_path / "cache", 10**9), GatedSource())
    link = FakeLink()
    agent = HostAgent(InMemoryRuntime(), FakeGpuProbe("", seed="g"), link, FixedSystem(), name="h",
                      credentials=MemoryCredentials(), address="10.0.0.5", join_token="join-1", data_mounts=mounts)
    link.want("env-a", "running")
    spec = link.desired["env-a"].spec
    link.desired["env-a"] = type(link.desired["env-a"])(
        "env-a", "running", 1, type(spec)(**{**spec.__dict__, "data_mounts": (DataMountSpec("/datasets/d", "dataset", "r1", 1),)}))
    await agent.beat_once()  # the download starts beside the loop
    await agent.beat_once()
    seen = {o.env_id: o for o in link.reports[-1].observed}["env-a"]
    assert sorted(files)[0] == hashlib.sha256(first).hexdigest()  # blobs are fetched in digest order: a.bin first
    assert seen.status == "missing" and seen.message.startswith(f"{MOUNTING} /datasets/d: 70% ")  # 3000 of 4000, in 10 % steps
    gate.set()
    for _ in range(100):
        await agent.beat_once()
        if link.reports[-1].observed and {o.env_id: o for o in link.reports[-1].observed}["env-a"].status == "running":
            break
        await asyncio.sleep(0.05)
    assert {o.env_id: o for o in link.reports[-1].observed}["env-a"].status == "running"
    assert mounts.progress() == {}  # done: nothing reported any more
