"""Storage test helpers: push a version through the API (the platform's part path), seed without it."""

from __future__ import annotations

import hashlib

from remotegpu.domain.storage.models import FileEntry

MiB = 1024 * 1024
PART = 8 * MiB


def entries(files: dict[str, bytes]) -> list[dict]:
    return [{"path": p, "size": len(b), "sha256": hashlib.sha256(b).hexdigest()} for p, b in files.items()]


async def start(client, headers, kind: str, repo_id: str, files: dict[str, bytes], **extra) -> dict:
    r = await client.post(f"/api/v1/{kind}s/{repo_id}/uploads", json={"files": entries(files), "part_size": PART, **extra},
                          headers=headers)
    assert r.status == 201, await r.text()
    return await r.json()


async def send_file(client, headers, upload: dict, data: bytes, *, skip: set[int] = frozenset()) -> None:
    digest = hashlib.sha256(data).hexdigest()
    pending = next(p for p in upload["pending"] if p["sha256"] == digest)
    for n in range(1, pending["part_count"] + 1):
        if n in skip or n in pending["received_parts"]:
            continue
        part = data[(n - 1) * upload["part_size"]: n * upload["part_size"]]
        r = await client.put(f"/api/v1/uploads/{upload['id']}/files/{digest}/parts/{n}", data=part,
                             headers={**headers, "Content-Type": "application/octet-stream"})
        assert r.status == 200, await r.text()


async def complete(client, headers, upload_id: str, digest: str):
    return await client.post(f"/api/v1/uploads/{upload_id}/files/{digest}/complete", json={}, headers=headers)


async def push(client, headers, kind: str, repo_id: str, files: dict[str, bytes], **extra) -> tuple[dict, dict]:
    """Upload and commit a version; returns (the upload as started, the version)."""
    upload = await start(client, headers, kind, repo_id, files, **extra)
    by_digest = {hashlib.sha256(b).hexdigest(): b for b in files.values()}
    for p in upload["pending"]:
        await send_file(client, headers, upload, by_digest[p["sha256"]])
        r = await complete(client, headers, upload["id"], p["sha256"])
        assert r.status == 200, await r.text()
    r = await client.post(f"/api/v1/uploads/{upload['id']}/commit", headers=headers)
    assert r.status == 201, await r.text()
    return upload, await r.json()


async def seed_dataset(container, workspace_id: str, user_id: str) -> tuple[str, str]:
    """A dataset with version 1 (one file) and an open upload; returns (dataset id, upload id)."""
    service = container.storage_service()
    async with container.storage_uow() as uow:
        user = await uow.users.get(user_id)
    from remotegpu.domain.storage.models import Kind

    repo = await service.create(user, Kind.DATASET, workspace_id, "seeded")
    data = b"seeded bytes"
    entry = FileEntry("a.txt", len(data), hashlib.sha256(data).hexdigest())
    upload = await service.start_upload(user, Kind.DATASET, repo.id, [entry])
    await service.put_part(user, upload.id, entry.sha256, 1, data)
    await service.complete_file(user, upload.id, entry.sha256)
    await service.commit(user, upload.id)
    other = FileEntry("b.txt", 3, hashlib.sha256(b"bbb").hexdigest())
    pending = await service.start_upload(user, Kind.DATASET, repo.id, [entry, other])
    await service.set_tag(user, Kind.DATASET, repo.id, "stable", "1")
    return repo.id, pending.id
