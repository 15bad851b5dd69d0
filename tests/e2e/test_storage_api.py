"""Datasets and models through the API: versions, dedup, resumable verified uploads, downloads,
diff, tags, visibility, quota, garbage collection (memory catalog + local object store)."""

from __future__ import annotations

import hashlib
import io
import tarfile
from datetime import timedelta

import pytest

from remotegpu.domain.storage.models import blob_key, digest_of_key
from tests.conftest import signup
from tests.support.storage import MiB, complete, push, send_file, start
from tests.support.workspaces import join_workspace


def _key():
    from remotegpu.entrypoints.http.keys import CONTAINER

    return CONTAINER


@pytest.fixture
def container_of(client):
    return client.server.app[_key()]


async def _dataset(client, account, name="imagenet-mini", kind="dataset", **extra):
    r = await client.post(f"/api/v1/{kind}s", json={"workspace_id": account.personal_workspace_id, "name": name, **extra},
                          headers=account.headers)
    assert r.status == 201, await r.text()
    return await r.json()


BIG = (hashlib.sha256(b"seed").digest() * (9 * MiB // 32 + 1))[: 9 * MiB + 5]  # two parts of 8 MiB


async def test_version_roundtrip_dedup_diff_and_downloads(client, container_of):
    me = await signup(client)
    ds = await _dataset(client, me)
    v1_files = {"train/big.bin": BIG, "README.md": b"# mini\n", "labels.csv": b"a,1\nb,2\n"}
    upload, v1 = await push(client, me.headers, "dataset", ds["id"], v1_files, message="first", tag="first")
    assert v1["number"] == 1 and v1["file_count"] == 3 and v1["tags"] == ["first"]
    assert {p["sha256"]: p["part_count"] for p in upload["pending"]}[hashlib.sha256(BIG).hexdigest()] == 2

    # Version 2: one file changed, one removed, one added; the big unchanged file is not sent again.
    v2_files = {"train/big.bin": BIG, "README.md": b"# mini v2\n", "extra.txt": b"new"}
    upload2, v2 = await push(client, me.headers, "dataset", ds["id"], v2_files)
    assert v2["number"] == 2
    assert sorted(p["sha256"] for p in upload2["pending"]) == sorted(hashlib.sha256(b).hexdigest() for b in (b"# mini v2\n", b"new"))
    store = container_of.object_store()
    blobs = await store.list("blobs/")
    assert len(blobs) == 5  # big once, two READMEs, labels, extra
    assert not await store.list("uploads/")  # staging objects gone

    r = await client.get(f"/api/v1/datasets/{ds['id']}", headers=me.headers)
    body = await r.json()
    assert body["latest_version"] == 2 and body["tags"] == {"first": 1}
    assert body["size_bytes"] == len(BIG) + sum(len(b) for b in (b"# mini\n", b"a,1\nb,2\n", b"# mini v2\n", b"new"))

    r = await client.get(f"/api/v1/datasets/{ds['id']}/diff?from=first&to=latest", headers=me.headers)
    d = await r.json()
    assert [f["path"] for f in d["added"]] == ["extra.txt"]
    assert [f["path"] for f in d["removed"]] == ["labels.csv"]
    assert [c["path"] for c in d["changed"]] == ["README.md"] and d["unchanged"] == 1

    r = await client.get(f"/api/v1/datasets/{ds['id']}/versions/latest", headers=me.headers)
    manifest = await r.json()
    assert [f["path"] for f in manifest["files"]] == ["README.md", "extra.txt", "train/big.bin"]

    # One file, whole and by range; its URL (no presigning on the local store: the platform's own).
    r = await client.get(f"/api/v1/datasets/{ds['id']}/versions/1/file?path=train/big.bin", headers=me.headers)
    assert r.status == 200 and hashlib.sha256(await r.read()).hexdigest() == hashlib.sha256(BIG).hexdigest()
    assert r.headers["X-Checksum-Sha256"] == hashlib.sha256(BIG).hexdigest()
    r = await client.get(f"/api/v1/datasets/{ds['id']}/versions/1/file?path=train/big.bin", headers={**me.headers, "Range": "bytes=100-199"})
    assert r.status == 206 and await r.read() == BIG[100:200]
    r = await client.get(f"/api/v1/datasets/{ds['id']}/versions/first/file-url?path=labels.csv", headers=me.headers)
    url = await r.json()
    assert url["presigned"] is False
    r = await client.get(url["url"], headers=me.headers)
    assert await r.read() == b"a,1\nb,2\n"
    r = await client.get(f"/api/v1/datasets/{ds['id']}/versions/1/file?path=nope", headers=me.headers)
    assert r.status == 404
    # Many files' URLs in one call (what pull uses); a path the version lacks: 404, bad input: 422.
    r = await client.post(f"/api/v1/datasets/{ds['id']}/versions/first/file-urls", json={"paths": ["labels.csv", "train/big.bin"]},
                          headers=me.headers)
    urls = await r.json()
    assert r.status == 200 and urls["expires_at"] is None
    assert [(i["path"], i["presigned"]) for i in urls["items"]] == [("labels.csv", False), ("train/big.bin", False)]
    r = await client.get(urls["items"][0]["url"], headers=me.headers)
    assert await r.read() == b"a,1\nb,2\n"
    r = await client.post(f"/api/v1/datasets/{ds['id']}/versions/1/file-urls", json={"paths": ["labels.csv", "nope"]}, headers=me.headers)
    assert r.status == 404
    r = await client.post(f"/api/v1/datasets/{ds['id']}/versions/1/file-urls", json={"paths": []}, headers=me.headers)
    assert r.status == 422 and (await r.json())["error"]["code"] == "validation_error"

    # The whole version as a streamed tar.
    r = await client.get(f"/api/v1/datasets/{ds['id']}/versions/2/archive", headers=me.headers)
    assert r.status == 200
    with tarfile.open(fileobj=io.BytesIO(await r.read())) as tar:
        got = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    assert got == {f"imagenet-mini/{p}": b for p, b in v2_files.items()}

    r = await client.get(f"/api/v1/storage/usage?workspace_id={me.personal_workspace_id}", headers=me.headers)
    assert (await r.json())["used_bytes"] == body["size_bytes"]


async def test_interrupted_upload_resumes_and_commits_only_when_verified(client):
    me = await signup(client)
    ds = await _dataset(client, me)
    upload = await start(client, me.headers, "dataset", ds["id"], {"big.bin": BIG})
    digest = hashlib.sha256(BIG).hexdigest()
    await send_file(client, me.headers, upload, BIG, skip={2})  # the connection dropped during part 2
    # A truncated part 2 is refused (its size is known), and nothing commits yet.
    r = await client.put(f"/api/v1/uploads/{upload['id']}/files/{digest}/parts/2", data=BIG[8 * MiB: 8 * MiB + 100],
                         headers={**me.headers, "Content-Type": "application/octet-stream"})
    assert r.status == 422 and (await r.json())["error"]["code"] == "wrong_part_size"
    r = await client.post(f"/api/v1/uploads/{upload['id']}/commit", headers=me.headers)
    assert r.status == 409 and (await r.json())["error"]["code"] == "upload_incomplete"
    r = await complete(client, me.headers, upload["id"], digest)
    assert r.status == 409 and (await r.json())["error"]["details"]["missing"] == [2]
    # Resume: the platform says what it has; only part 2 goes again.
    r = await client.get(f"/api/v1/uploads/{upload['id']}", headers=me.headers)
    state = await r.json()
    assert state["pending"][0]["received_parts"] == [1] and state["pending"][0]["verified"] is False
    await send_file(client, me.headers, state, BIG)
    r = await complete(client, me.headers, upload["id"], digest)
    assert r.status == 200 and (await r.json())["pending"][0]["verified"] is True
    r = await client.post(f"/api/v1/uploads/{upload['id']}/commit", headers=me.headers)
    assert r.status == 201
    r = await client.get(f"/api/v1/uploads/{upload['id']}", headers=me.headers)
    assert r.status == 404  # committed uploads are gone


async def test_bytes_that_do_not_match_their_sha256_are_discarded(client, container_of):
    me = await signup(client)
    ds = await _dataset(client, me)
    # A file of one part through the platform: hashed as it arrives, refused before it is stored.
    claimed = b"the real content"
    upload = await start(client, me.headers, "dataset", ds["id"], {"f.txt": claimed})
    digest = hashlib.sha256(claimed).hexdigest()
    r = await client.put(f"/api/v1/uploads/{upload['id']}/files/{digest}/parts/1", data=b"an impostor text",  # same size
                         headers={**me.headers, "Content-Type": "application/octet-stream"})
    assert r.status == 422 and (await r.json())["error"]["code"] == "checksum_mismatch"
    assert await container_of.object_store().list("blobs/") == []  # the impostor bytes were never stored
    r = await client.post(f"/api/v1/uploads/{upload['id']}/commit", headers=me.headers)
    assert r.status == 409
    r = await complete(client, me.headers, upload["id"], digest)  # nothing there yet
    assert r.status == 409 and (await r.json())["error"]["code"] == "parts_missing"
    # Sent again correctly, it is verified at once (complete is then a no-op).
    r = await client.put(f"/api/v1/uploads/{upload['id']}/files/{digest}/parts/1", data=claimed,
                         headers={**me.headers, "Content-Type": "application/octet-stream"})
    assert r.status == 200
    assert (await complete(client, me.headers, upload["id"], digest)).status == 200
    assert (await client.post(f"/api/v1/uploads/{upload['id']}/commit", headers=me.headers)).status == 201

    # A file of two parts: verified from the assembled bytes at complete; a mismatch discards them.
    real = b"r" * (9 * MiB)
    upload = await start(client, me.headers, "dataset", ds["id"], {"big.bin": real})
    digest = hashlib.sha256(real).hexdigest()
    for n, part in ((1, b"x" * (8 * MiB)), (2, b"r" * MiB)):
        r = await client.put(f"/api/v1/uploads/{upload['id']}/files/{digest}/parts/{n}", data=part,
                             headers={**me.headers, "Content-Type": "application/octet-stream"})
        assert r.status == 200
    r = await complete(client, me.headers, upload["id"], digest)
    assert r.status == 422 and (await r.json())["error"]["code"] == "checksum_mismatch"
    keys = [o.key for o in await container_of.object_store().list("blobs/")]
    assert len(keys) == 1 and hashlib.sha256(claimed).hexdigest() in keys[0]  # the impostor bytes are gone
    r = await client.post(f"/api/v1/uploads/{upload['id']}/commit", headers=me.headers)
    assert r.status == 409
    r = await client.get(f"/api/v1/uploads/{upload['id']}", headers=me.headers)
    await send_file(client, me.headers, await r.json(), real)
    assert (await complete(client, me.headers, upload["id"], digest)).status == 200
    assert (await client.post(f"/api/v1/uploads/{upload['id']}/commit", headers=me.headers)).status == 201


async def test_many_small_files_in_one_request_are_verified_or_refused_together(client, container_of):
    me = await signup(client)
    ds = await _dataset(client, me)
    files = {f"f{i}.txt": f"file {i}".encode() for i in range(5)} | {"big.bin": b"b" * (9 * MiB)}
    upload = await start(client, me.headers, "dataset", ds["id"], files)
    small = [hashlib.sha256(b).hexdigest() for p, b in files.items() if p != "big.bin"]
    body = b"".join(b for p, b in files.items() if p != "big.bin")
    url = f"/api/v1/uploads/{upload['id']}/files?sha256="
    octets = {**me.headers, "Content-Type": "application/octet-stream"}
    # One wrong byte: the lot is refused, nothing stored.
    r = await client.post(url + ",".join(small), data=body[:-1] + b"X", headers=octets)
    assert r.status == 422 and (await r.json())["error"]["details"]["sha256"] == [small[-1]]
    assert await container_of.object_store().list("blobs/") == []
    r = await client.post(url + ",".join(small), data=body[:-1], headers=octets)  # short
    assert r.status == 422 and (await r.json())["error"]["code"] == "wrong_part_size"
    big = hashlib.sha256(files["big.bin"]).hexdigest()
    r = await client.post(url + big, data=files["big.bin"][:8 * MiB], headers=octets)  # two parts: not this way
    assert r.status == 422 and (await r.json())["error"]["code"] == "not_whole"
    r = await client.post(url + ",".join(small), data=body, headers=octets)
    assert r.status == 200 and (await r.json())["verified"] == small
    r = await client.get(f"/api/v1/uploads/{upload['id']}", headers=me.headers)
    assert {p["sha256"] for p in (await r.json())["pending"] if p["verified"]} == set(small)
    r = await client.post(url + small[0], data=files["f0.txt"], headers=octets)  # already verified
    assert r.status == 409
    await send_file(client, me.headers, upload, files["big.bin"])
    assert (await complete(client, me.headers, upload["id"], big)).status == 200
    r = await client.post(f"/api/v1/uploads/{upload['id']}/commit", headers=me.headers)
    assert r.status == 201
    for path, data in files.items():
        r = await client.get(f"/api/v1/datasets/{ds['id']}/versions/1/file?path={path}", headers=me.headers)
        assert await r.read() == data


async def test_tenants_visibility_roles_and_models(client, container_of):
    owner, stranger, viewer = await signup(client), await signup(client), await signup(client)
    admin = await signup(client, admin_container=container_of)
    ws = owner.personal_workspace_id
    r = await client.post("/api/v1/workspaces", json={"name": "lab"}, headers=owner.headers)
    team = (await r.json())["id"]
    await join_workspace(client, owner, team, viewer, "viewer")
    r = await client.post("/api/v1/datasets", json={"workspace_id": team, "name": "shared"}, headers=owner.headers)
    ds = await r.json()
    await push(client, owner.headers, "dataset", ds["id"], {"x": b"x"})
    # Another tenant: 404 everywhere; a viewer reads but does not write; public only by platform admins.
    for path in (f"/api/v1/datasets/{ds['id']}", f"/api/v1/datasets/{ds['id']}/versions/1/file?path=x"):
        assert (await client.get(path, headers=stranger.headers)).status == 404
        assert (await client.get(path, headers=viewer.headers)).status == 200
    r = await client.post(f"/api/v1/datasets/{ds['id']}/uploads", json={"files": [{"path": "y", "size": 1, "sha256": "0" * 64}]},
                          headers=viewer.headers)
    assert r.status == 403
    r = await client.patch(f"/api/v1/datasets/{ds['id']}", json={"visibility": "public"}, headers=owner.headers)
    assert r.status == 403 and (await r.json())["error"]["code"] == "admin_required"
    r = await client.patch(f"/api/v1/datasets/{ds['id']}", json={"visibility": "public"}, headers=admin.headers)
    assert r.status == 200
    # The public shelf: everyone reads it, nobody outside writes.
    r = await client.get("/api/v1/datasets", headers=stranger.headers)
    assert [d["name"] for d in (await r.json())["items"]] == ["shared"]
    assert (await client.get(f"/api/v1/datasets/{ds['id']}/versions/1/file?path=x", headers=stranger.headers)).status == 200
    assert (await client.delete(f"/api/v1/datasets/{ds['id']}", headers=stranger.headers)).status == 404
    # A dataset is not a model.
    assert (await client.get(f"/api/v1/models/{ds['id']}", headers=owner.headers)).status == 404
    # Models carry metadata.
    model = await _dataset(client, owner, "llama-ft", kind="model",
                           model={"framework": "pytorch", "format": "safetensors", "task": "text-generation",
                                  "base_model": "llama-3-8b", "metrics": {"eval_loss": 1.25}})
    assert model["model"]["metrics"] == {"eval_loss": 1.25} and model["kind"] == "model"
    r = await client.patch(f"/api/v1/models/{model['id']}", json={"model": {"framework": "pytorch", "metrics": {"acc": 0.9}}},
                           headers=owner.headers)
    assert (await r.json())["model"]["metrics"] == {"acc": 0.9}
    r = await client.get(f"/api/v1/models?workspace_id={ws}&public=false", headers=owner.headers)
    assert [m["name"] for m in (await r.json())["items"]] == ["llama-ft"]
    r = await client.post("/api/v1/models", json={"workspace_id": ws, "name": "llama-ft"}, headers=owner.headers)
    assert r.status == 409
    r = await client.post("/api/v1/models", json={"workspace_id": ws, "name": "Bad Name"}, headers=owner.headers)
    assert r.status == 422


async def test_paths_and_manifests_are_checked(client):
    me = await signup(client)
    ds = await _dataset(client, me)
    for files in ([{"path": "../etc/passwd", "size": 1, "sha256": "a" * 64}],
                  [{"path": "/abs", "size": 1, "sha256": "a" * 64}],
                  [{"path": "a", "size": 1, "sha256": "a" * 64}, {"path": "a/b", "size": 1, "sha256": "b" * 64}],
                  [{"path": "x", "size": 1, "sha256": "XYZ" * 21 + "a"}]):
        r = await client.post(f"/api/v1/datasets/{ds['id']}/uploads", json={"files": files}, headers=me.headers)
        assert r.status == 422, files
    r = await client.post(f"/api/v1/datasets/{ds['id']}/uploads",
                          json={"files": [{"path": "x", "size": 1, "sha256": "a" * 64}], "part_size": 1024}, headers=me.headers)
    assert r.status == 422


async def test_quota_counts_deduplicated_bytes(client, container_of):
    me = await signup(client)
    admin = await signup(client, admin_container=container_of)
    ds = await _dataset(client, me)
    await push(client, me.headers, "dataset", ds["id"], {"a": b"a" * 1000})
    r = await client.put(f"/api/v1/workspaces/{me.personal_workspace_id}/quota", json={"max_storage_gib": 0}, headers=admin.headers)
    assert r.status == 200, await r.text()
    # Same bytes again: nothing new to store, so it fits even at 0 GiB.
    await push(client, me.headers, "dataset", ds["id"], {"a": b"a" * 1000, "copy-of-a": b"a" * 1000})
    r = await client.post(f"/api/v1/datasets/{ds['id']}/uploads", json={"files": [{"path": "b", "size": 10, "sha256": "b" * 64}]},
                          headers=me.headers)
    assert r.status == 409 and (await r.json())["error"]["code"] == "quota_exceeded"


async def test_gc_frees_only_unreferenced_blobs_and_abandoned_uploads(client, container_of):
    me = await signup(client)
    admin = await signup(client, admin_container=container_of)
    ds = await _dataset(client, me)
    await push(client, me.headers, "dataset", ds["id"], {"shared": b"kept", "only-v1": b"goes"})
    await push(client, me.headers, "dataset", ds["id"], {"shared": b"kept", "only-v2": b"stays"})
    abandoned = await start(client, me.headers, "dataset", ds["id"], {"half": b"h" * 100})
    store, service = container_of.object_store(), container_of.storage_service()
    # Within the grace period nothing goes, even unreferenced.
    assert (await client.delete(f"/api/v1/datasets/{ds['id']}/versions/1", headers=me.headers)).status == 204
    r = await client.post("/api/v1/storage/collect", headers=admin.headers)
    assert await r.json() == {"blobs_removed": 0, "bytes_freed": 0, "uploads_cleaned": 0}
    assert (await client.post("/api/v1/storage/collect", headers=me.headers)).status == 403
    service.grace = timedelta(0)
    r = await client.post("/api/v1/storage/collect", headers=admin.headers)
    assert await r.json() == {"blobs_removed": 1, "bytes_freed": 4, "uploads_cleaned": 1}
    keys = {digest_of_key(o.key) for o in await store.list("blobs/")}
    assert keys == {hashlib.sha256(b"kept").hexdigest(), hashlib.sha256(b"stays").hexdigest()}
    assert (await client.get(f"/api/v1/uploads/{abandoned['id']}", headers=me.headers)).status == 404
    r = await client.get(f"/api/v1/datasets/{ds['id']}/versions/2/file?path=shared", headers=me.headers)
    assert await r.read() == b"kept"
    # Crash between the catalog and the object store: the orphan object goes on the next run.
    await store.put(blob_key("f" * 64), _one(b"orphan"))
    r = await client.post("/api/v1/storage/collect", headers=admin.headers)
    assert (await r.json())["blobs_removed"] == 1 and await store.stat(blob_key("f" * 64)) is None


async def _one(data: bytes):
    yield data


async def test_environment_mounts_are_checked_at_create(client, container_of):
    me, stranger = await signup(client), await signup(client)
    admin = await signup(client, admin_container=container_of)
    ws = me.personal_workspace_id
    mine = await _dataset(client, me, "mine")
    await push(client, me.headers, "dataset", mine["id"], {"f": b"f"})
    theirs = await _dataset(client, stranger, "theirs")
    await push(client, stranger.headers, "dataset", theirs["id"], {"g": b"g"})
    base = {"workspace_id": ws, "cpu_cores": 1, "memory_gib": 1}

    async def create(name, mounts):
        return await client.post("/api/v1/environments", json={**base, "name": name, "mounts": mounts}, headers=me.headers)

    r = await create("a", [{"kind": "dataset", "name": "mine"}, {"kind": "model", "name": "nope"}])
    assert r.status == 422 and (await r.json())["error"]["code"] == "mount_not_found"
    r = await create("b", [{"kind": "dataset", "name": theirs["id"]}])  # another tenant's, even by id
    assert r.status == 422
    r = await create("c", [{"kind": "dataset", "name": "mine", "version": "7"}])
    assert r.status == 404
    r = await create("d", [{"kind": "dataset", "name": "mine"}, {"kind": "dataset", "name": mine["id"]}])
    assert r.status == 422  # the same path twice
    # A public dataset of another workspace may be mounted (by id).
    assert (await client.patch(f"/api/v1/datasets/{theirs['id']}", json={"visibility": "public"}, headers=admin.headers)).status == 200
    r = await create("e", [{"kind": "dataset", "name": "mine", "version": "1"}, {"kind": "dataset", "name": theirs["id"]}])
    assert r.status == 202, await r.text()
    env = await r.json()
    assert env["mounts"] == [
        {"kind": "dataset", "repository_id": mine["id"], "name": "mine", "version": "1", "path": "/datasets/mine"},
        {"kind": "dataset", "repository_id": theirs["id"], "name": "theirs", "version": "latest", "path": "/datasets/theirs"},
    ]
    r = await client.get(f"/api/v1/environments/{env['id']}", headers=me.headers)
    assert (await r.json())["mounts"] == env["mounts"]
    # What the agent gets: versions resolved now.
    async with container_of.storage_uow() as uow:
        stored = await uow.environments.get(env["id"])
    assert await container_of.storage_mounts().resolve(ws, stored.data_mounts) == [
        ("/datasets/mine", "dataset", mine["id"], 1), ("/datasets/theirs", "dataset", theirs["id"], 1)]


async def test_large_files_verify_over_several_read_back_chunks(client, container_of):
    """A blob of several 8 MiB read-back chunks (hashed in a worker thread while the next
    arrives): the right bytes verify, the same number of wrong bytes do not."""
    me = await signup(client)
    ds = await _dataset(client, me, "ranges")
    real = (hashlib.sha256(b"r").digest() * (21 * MiB // 32 + 1))[: 21 * MiB + 3]  # three parts of 8 MiB, odd tail
    _, version = await push(client, me.headers, "dataset", ds["id"], {"big.bin": real})
    r = await client.get(f"/api/v1/datasets/{ds['id']}/versions/1/file?path=big.bin", headers=me.headers)
    assert hashlib.sha256(await r.read()).digest() == hashlib.sha256(real).digest()
    impostor = real[:-1] + b"\x00"
    upload = await start(client, me.headers, "dataset", ds["id"], {"other.bin": impostor[:-2] + b"zz"})
    digest = upload["pending"][0]["sha256"]
    size = upload["part_size"]
    for n in range(1, upload["pending"][0]["part_count"] + 1):  # same size, not those bytes
        r = await client.put(f"/api/v1/uploads/{upload['id']}/files/{digest}/parts/{n}", data=impostor[(n - 1) * size: n * size],
                             headers={**me.headers, "Content-Type": "application/octet-stream"})
        assert r.status == 200, await r.text()
    r = await complete(client, me.headers, upload["id"], digest)
    assert r.status == 422 and (await r.json())["error"]["code"] == "checksum_mismatch"
    assert (await r.json())["error"]["details"]["sha256"] == hashlib.sha256(impostor).hexdigest()
