"""Datasets on an S3 backend (moto server mode and s3rver): parts go straight to S3 by
presigned URLs, the platform verifies sha256 from the stored bytes, downloads are presigned."""

from __future__ import annotations

import hashlib
import uuid

import aiohttp
import pytest

from remotegpu.entrypoints.containers import build_container
from remotegpu.entrypoints.http.app import create_app
from tests.conftest import make_settings, signup
from tests.support.s3servers import s3_server
from tests.support.storage import MiB, start

DATA = (hashlib.sha256(b"s3").digest() * (MiB // 32))[: 8 * MiB] + b"tail of the file"


@pytest.fixture(scope="module", params=["moto", "s3rver"])
def s3(request):
    with s3_server(request.param) as server:
        yield server


@pytest.fixture
async def s3_client(aiohttp_client, tmp_path, s3):
    settings = make_settings(tmp_path, storage_backend="s3", s3_endpoint=s3.endpoint, s3_bucket=f"rgpu-{uuid.uuid4().hex[:10]}",
                             s3_access_key=s3.access_key, s3_secret_key=s3.secret_key, s3_region=s3.region, s3_addressing="path")
    app = create_app(build_container(settings, persistence="memory"), run_background=False)
    return await aiohttp_client(app, cookie_jar=aiohttp.DummyCookieJar())


async def test_presigned_parts_verified_commit_and_presigned_download(s3_client):
    client = s3_client
    me = await signup(client)
    r = await client.post("/api/v1/datasets", json={"workspace_id": me.personal_workspace_id, "name": "on-s3"}, headers=me.headers)
    ds = await r.json()
    upload = await start(client, me.headers, "dataset", ds["id"], {"data.bin": DATA, "small.txt": b"small"})
    assert upload["presigned"] is True
    async with aiohttp.ClientSession() as http:
        for p in upload["pending"]:
            data = DATA if p["size"] == len(DATA) else b"small"
            numbers = list(range(1, p["part_count"] + 1))
            r = await client.post(f"/api/v1/uploads/{upload['id']}/files/{p['sha256']}/part-urls", json={"numbers": numbers},
                                  headers=me.headers)
            urls = (await r.json())["urls"]
            assert urls and all(u.startswith("http://127.0.0.1") for u in urls.values())
            parts = []
            for n in numbers:
                chunk = data[(n - 1) * upload["part_size"]: n * upload["part_size"]]
                async with http.put(urls[str(n)], data=chunk) as resp:  # straight to S3: the platform never sees the bytes
                    assert resp.status == 200, await resp.text()
                    parts.append({"number": n, "etag": resp.headers["ETag"]})
            r = await client.post(f"/api/v1/uploads/{upload['id']}/files/{p['sha256']}/complete", json={"parts": parts},
                                  headers=me.headers)
            assert r.status == 200, await r.text()
        r = await client.post(f"/api/v1/uploads/{upload['id']}/commit", headers=me.headers)
        assert r.status == 201, await r.text()
        r = await client.get(f"/api/v1/datasets/{ds['id']}/versions/latest/file-url?path=data.bin", headers=me.headers)
        url = await r.json()
        assert url["presigned"] is True
        async with http.get(url["url"]) as resp:
            assert resp.status == 200 and hashlib.sha256(await resp.read()).digest() == hashlib.sha256(DATA).digest()
        r = await client.post(f"/api/v1/datasets/{ds['id']}/versions/latest/file-urls", json={"paths": ["small.txt", "data.bin"]},
                              headers=me.headers)
        urls = await r.json()
        assert urls["expires_at"] and [i["path"] for i in urls["items"]] == ["small.txt", "data.bin"]
        assert all(i["presigned"] for i in urls["items"])
        async with http.get(urls["items"][0]["url"]) as resp:  # straight from S3
            assert resp.status == 200 and await resp.read() == b"small"
    # Through the platform too (proxied), by range.
    r = await client.get(f"/api/v1/datasets/{ds['id']}/versions/1/file?path=data.bin", headers={**me.headers, "Range": "bytes=-16"})
    assert r.status == 206 and await r.read() == b"tail of the file"
    # Content-addressed in the bucket: blobs/sha256/<ab>/<sha256>.<upload> (assembled there, never copied), nothing else.
    keys = [o.key for o in await client.server.app[_key()].object_store().list("")]
    digests = sorted(hashlib.sha256(d).hexdigest() for d in (DATA, b"small"))
    assert len(keys) == 2 and sorted(k.rsplit("/", 1)[-1].split(".")[0] for k in keys) == digests
    assert all(k.startswith(f"blobs/sha256/{k.rsplit('/', 1)[-1][:2]}/") for k in keys)


def _key():
    from remotegpu.entrypoints.http.keys import CONTAINER

    return CONTAINER
