"""The object store port's contract, over the local filesystem adapter and the S3 adapter
against two independent S3 servers (moto server mode and s3rver; MinIO itself cannot be
installed here: see README "Storage")."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
import uuid
from datetime import timedelta

import aiohttp
import pytest

from remotegpu.adapters.storage.local_store import LocalObjectStore
from remotegpu.adapters.storage.s3_store import S3Config, S3ObjectStore
from remotegpu.application.storage.ports import ObjectNotFound, PartInfo, Unsupported
from tests.support.s3servers import s3_server

MiB = 1024 * 1024
KINDS = ["local", "moto", "s3rver"]


@pytest.fixture(scope="module")
def moto():
    with s3_server("moto") as server:
        yield server


@pytest.fixture(scope="module")
def s3rver():
    with s3_server("s3rver") as server:
        yield server


@pytest.fixture(params=KINDS)
async def store(request, tmp_path):
    if request.param == "local":
        s = LocalObjectStore(tmp_path / "objects")
    else:
        server = request.getfixturevalue(request.param)
        s = S3ObjectStore(S3Config(endpoint=server.endpoint, bucket=f"b-{uuid.uuid4().hex[:12]}", access_key=server.access_key,
                                   secret_key=server.secret_key, region=server.region, addressing="path"))
    await s.ensure_ready()
    await s.ensure_ready()  # idempotent
    s.kind = request.param
    return s


async def _gen(data: bytes, chunk: int = 64 * 1024):
    for i in range(0, len(data), chunk):
        yield data[i:i + chunk]


async def _read(it) -> bytes:
    return b"".join([c async for c in it])


def _pattern(n: int, seed: int = 0) -> bytes:
    block = hashlib.sha256(str(seed).encode()).digest() * 2048  # 64 KiB
    return (block * (n // len(block) + 1))[:n]


async def test_put_get_stat_list_delete(store):
    assert await store.stat("a/b.txt") is None
    assert await store.put("a/b.txt", _gen(b"hello")) == 5
    await store.put("a/c/d.bin", _gen(b""))
    await store.put("z.txt", _gen(b"zz"))
    assert await _read(await store.get("a/b.txt")) == b"hello"
    assert await _read(await store.get("a/c/d.bin")) == b""
    info = await store.stat("a/b.txt")
    assert info is not None and info.size == 5
    assert [(o.key, o.size) for o in await store.list("a/")] == [("a/b.txt", 5), ("a/c/d.bin", 0)]
    assert [o.key for o in await store.list()] == ["a/b.txt", "a/c/d.bin", "z.txt"]
    await store.put("a/b.txt", _gen(b"replaced"))
    assert await _read(await store.get("a/b.txt")) == b"replaced"
    await store.delete("a/b.txt")
    await store.delete("a/b.txt")  # idempotent
    assert await store.stat("a/b.txt") is None
    with pytest.raises(ObjectNotFound):
        await store.get("a/b.txt")
    assert [o.key for o in await store.list("a/")] == ["a/c/d.bin"]


async def test_ranges(store):
    data = _pattern(3 * MiB + 17)
    await store.put("r", _gen(data))
    assert await _read(await store.get("r", offset=10, length=100)) == data[10:110]
    assert await _read(await store.get("r", offset=3 * MiB)) == data[3 * MiB:]
    assert await _read(await store.get("r", offset=MiB - 1, length=2 * MiB + 2, chunk_size=4096)) == data[MiB - 1:3 * MiB + 1]


async def test_copy(store):
    await store.put("src", _gen(b"payload"))
    await store.copy("src", "dir/dst")
    await store.delete("src")
    assert await _read(await store.get("dir/dst")) == b"payload"
    with pytest.raises(ObjectNotFound):
        await store.copy("missing", "x")


async def _interrupted_part(store, key: str, upload_id: str, number: int, data: bytes) -> None:
    """A client whose connection drops halfway through sending a part."""
    url = await store.presign_part(key, upload_id, number, timedelta(minutes=5))
    if url is None:  # the platform carries the bytes: the part never reached the store
        return

    class Dropped(Exception):
        pass

    async def body():
        yield data[: len(data) // 2]
        raise Dropped()

    async with aiohttp.ClientSession() as http:
        with pytest.raises((Dropped, aiohttp.ClientError)):
            async with http.put(url, data=body(), headers={"Content-Length": str(len(data))}) as r:
                await r.read()


async def test_multipart_resumes_after_an_interrupted_part(store):
    parts_data = [_pattern(5 * MiB, 1), _pattern(5 * MiB, 2), _pattern(123, 3)]
    key = "big/file.bin"
    upload_id = await store.create_multipart(key)
    e1 = await store.upload_part(key, upload_id, 1, parts_data[0])
    await _interrupted_part(store, key, upload_id, 2, parts_data[1])
    try:
        listed = await store.list_parts(key, upload_id)
    except Unsupported:
        assert store.kind == "s3rver"  # s3rver has no ListParts: the platform records parts itself
    else:
        assert [(p.number, p.etag, p.size) for p in listed] == [(1, e1, 5 * MiB)]
    assert await store.stat(key) is None  # nothing visible before completion
    e2 = await store.upload_part(key, upload_id, 2, parts_data[1])  # resume: only the missing parts
    e3 = await store.upload_part(key, upload_id, 3, parts_data[2])
    await store.complete_multipart(key, upload_id, [PartInfo(3, e3, 123), PartInfo(1, e1, 0), PartInfo(2, e2, 0)])
    got = await _read(await store.get(key))
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(b"".join(parts_data)).hexdigest()
    # Abort of something gone is fine.
    await store.abort_multipart(key, upload_id)


async def test_aborted_multipart_leaves_nothing(store):
    upload_id = await store.create_multipart("gone")
    await store.upload_part("gone", upload_id, 1, b"x" * 1024)
    await store.abort_multipart("gone", upload_id)
    assert await store.stat("gone") is None
    with pytest.raises(Unsupported if store.kind == "s3rver" else ObjectNotFound):
        await store.list_parts("gone", upload_id)


async def test_presigned_get_and_put(store):
    put_url = await store.presign_put("pre/up.bin", timedelta(minutes=5))
    if not store.presigns:
        assert put_url is None and await store.presign_get("x", timedelta(minutes=5)) is None
        return
    async with aiohttp.ClientSession() as http:
        async with http.put(put_url, data=b"via presigned PUT") as r:
            assert r.status == 200, await r.text()
        get_url = await store.presign_get("pre/up.bin", timedelta(minutes=5), filename="up.bin")
        async with http.get(get_url) as r:
            assert r.status == 200 and await r.read() == b"via presigned PUT"
        async with http.get(get_url, headers={"Range": "bytes=4-12"}) as r:
            assert r.status == 206 and await r.read() == b"presigned"
        # A URL for one key does not open another.
        async with http.get(get_url.replace("pre/up.bin", "pre/other.bin")) as r:
            assert r.status in (403, 404)
        # A part by presigned URL completes like any other.
        upload_id = await store.create_multipart("pre/parts.bin")
        async with http.put(await store.presign_part("pre/parts.bin", upload_id, 1, timedelta(minutes=5)), data=b"abc") as r:
            assert r.status == 200
            etag = r.headers["ETag"].strip('"')
    await store.complete_multipart("pre/parts.bin", upload_id, [PartInfo(1, etag, 3)])
    assert await _read(await store.get("pre/parts.bin")) == b"abc"


async def test_large_object_streams_without_loading_into_memory(store):
    size = 48 * MiB
    part = 8 * MiB

    async def generated():
        block = os.urandom(MiB)
        for i in range(size // MiB):
            yield block[i:] + block[:i]

    tracemalloc.start()
    try:
        assert await store.put("large.bin", generated(), part_size=part) == size
        _, peak_put = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        digest, got = hashlib.sha256(), 0
        async for chunk in await store.get("large.bin", chunk_size=MiB):
            digest.update(chunk)
            got += len(chunk)
        _, peak_get = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got == size
    assert (await store.stat("large.bin")).size == size
    assert peak_put < 4 * part, f"put held {peak_put / MiB:.1f} MiB"
    assert peak_get < 8 * MiB, f"get held {peak_get / MiB:.1f} MiB"


@pytest.mark.parametrize("kind", ["moto", "s3rver"])
async def test_bucket_cors_lets_the_console_origin_put_parts_and_read_etags(request, kind):
    """ensure_ready writes the bucket's CORS rules (cors_origins): a browser at that origin
    may PUT a presigned part and read its ETag; another origin is not let in."""
    server = request.getfixturevalue(kind)
    origin = "http://console.example:8080"
    store = S3ObjectStore(S3Config(endpoint=server.endpoint, bucket=f"c-{uuid.uuid4().hex[:12]}", access_key=server.access_key,
                                   secret_key=server.secret_key, region=server.region, addressing="path", cors_origins=(origin,)))
    await store.ensure_ready()
    await store.ensure_ready()  # idempotent
    upload_id = await store.create_multipart("k")
    url = await store.presign_part("k", upload_id, 1, timedelta(minutes=5))
    async with aiohttp.ClientSession() as http:
        preflight = {"Origin": origin, "Access-Control-Request-Method": "PUT"}
        async with http.options(url, headers=preflight) as r:
            assert r.status in (200, 204) and r.headers.get("Access-Control-Allow-Origin") in (origin, "*")
            assert "PUT" in r.headers.get("Access-Control-Allow-Methods", "")
        async with http.put(url, data=b"x" * 100, headers={"Origin": origin}) as r:
            assert r.status == 200
            assert r.headers.get("Access-Control-Allow-Origin") in (origin, "*")
            assert "etag" in r.headers.get("Access-Control-Expose-Headers", "").lower() and r.headers.get("ETag")
        if kind == "s3rver":  # moto's server answers every preflight itself (flask-cors), whatever the bucket says
            async with http.options(url, headers={**preflight, "Origin": "http://elsewhere.example"}) as r:
                assert r.headers.get("Access-Control-Allow-Origin") != "http://elsewhere.example"
    await store.abort_multipart("k", upload_id)
