"""Storage catalog contract: memory, SQLite and PostgreSQL (migrated by Alembic) behave alike."""

from __future__ import annotations

import asyncio

import pytest

from remotegpu.adapters.db.uow import SqlUnitOfWork
from remotegpu.adapters.memory.store import InMemoryStore
from remotegpu.adapters.memory.uow import InMemoryUnitOfWork
from remotegpu.adapters.storage.memory_catalog import InMemoryStorageCatalog
from remotegpu.adapters.storage.sql_catalog import SqlStorageCatalog
from remotegpu.domain.shared.errors import Conflict
from remotegpu.domain.storage.models import (
    Blob, FileEntry, Kind, ModelInfo, PendingBlob, Repository, Upload, Version, Visibility,
)
from tests.contract.conftest import sql_sessions
from tests.contract.test_repositories import add_users, at, make_user, make_workspace


@pytest.fixture
async def catalog(repo_backend, tmp_path):
    name, pg = repo_backend
    if name == "memory":
        store = InMemoryStore()
        yield (lambda: InMemoryUnitOfWork(store)), InMemoryStorageCatalog()
        return
    async with sql_sessions(repo_backend, tmp_path) as sessions:
        yield (lambda: SqlUnitOfWork(sessions)), SqlStorageCatalog(sessions)


async def _workspaces(uow_factory, n=2) -> list[str]:
    owner = make_user(1)
    await add_users(uow_factory, owner)
    ids = []
    async with uow_factory() as uow:
        for i in range(1, n + 1):
            ws = make_workspace(i, owner)
            await uow.workspaces.add(ws)
            ids.append(ws.id)
        await uow.commit()
    return ids


def _repo(n: int, ws: str, kind=Kind.DATASET, name=None, visibility=Visibility.PRIVATE) -> Repository:
    return Repository(f"60000000-0000-0000-0000-{n:012d}", ws, kind, name or f"r{n}", "u", at(n), at(n), description=f"d{n}",
                      visibility=visibility, model=ModelInfo(framework="pytorch", metrics={"loss": 0.5}) if kind is Kind.MODEL else None)


def _f(path: str, ch: str, size: int = 10) -> FileEntry:
    return FileEntry(path, size, ch * 64)


async def test_repositories_versions_and_bytes(catalog):
    uow_factory, c = catalog
    ws1, ws2 = await _workspaces(uow_factory)
    a, b = _repo(1, ws1), _repo(2, ws1, Kind.MODEL)
    pub = _repo(3, ws2, visibility=Visibility.PUBLIC)
    for r in (a, b, pub):
        await c.add_repository(r)
    with pytest.raises(Conflict):
        await c.add_repository(_repo(9, ws1, name="r1"))
    await c.add_repository(_repo(10, ws1, Kind.MODEL, name="r1"))  # same name, other kind: fine
    got = await c.get_repository(b.id)
    assert got.model.metrics == {"loss": 0.5} and got.kind is Kind.MODEL
    assert [r.name for r in await c.list_repositories("dataset", ws1, public=False)] == ["r1"]
    assert [r.name for r in await c.list_repositories("dataset", ws1, public=True)] == ["r1", "r3"]
    assert [r.name for r in await c.list_repositories("dataset", None, public=True)] == ["r3"]
    assert (await c.find_repository(ws1, "model", "r2")).id == b.id

    await c.add_version(Version(a.id, 1, [_f("x", "a"), _f("y/z", "b", 20)], "u", at(5), "one"))
    await c.add_version(Version(a.id, 2, [_f("x", "a"), _f("w", "c", 30)], "u", at(6)))
    await c.add_version(Version(pub.id, 1, [_f("x", "a")], "u", at(6)))
    with pytest.raises(Conflict):
        await c.add_version(Version(a.id, 2, [_f("q", "d")], "u", at(7)))
    versions = await c.list_versions(a.id)
    assert [v.number for v in versions] == [1, 2] and versions[0].files == [_f("x", "a"), _f("y/z", "b", 20)]
    assert versions[0].message == "one"
    assert await c.repository_bytes(a.id) == 60 and await c.workspace_bytes(ws1) == 60 and await c.workspace_bytes(ws2) == 10

    a.tags = {"stable": 1, "new": 2}
    await c.update_repository(a)
    await c.delete_version(a.id, 1)
    assert (await c.get_repository(a.id)).tags == {"new": 2}
    assert await c.get_version(a.id, 1) is None and await c.repository_bytes(a.id) == 40
    await c.delete_repository(a.id)
    assert await c.get_repository(a.id) is None and await c.list_versions(a.id) == []


async def test_blob_collection_spares_referenced_young_and_uploading(catalog):
    uow_factory, c = catalog
    ws1, _ = await _workspaces(uow_factory)
    repo = _repo(1, ws1)
    await c.add_repository(repo)
    for ch, n in (("a", 1), ("b", 1), ("c", 1), ("d", 9)):
        assert await c.add_blob(Blob(ch * 64, 10, at(n)))
    assert not await c.add_blob(Blob("a" * 64, 10, at(1)))
    await c.add_version(Version(repo.id, 1, [_f("x", "a")], "u", at(2)))
    upload = Upload("70000000-0000-0000-0000-000000000001", repo.id, ws1, "u", at(3), at(3), [_f("y", "b")], 8 << 20,
                    {"e" * 64: PendingBlob("e" * 64, 5, "uploads/k/e", "mp"), "f" * 64: PendingBlob("f" * 64, 5, "uploads/k/f", "")},
                    tag="t")
    await c.add_upload(upload)
    got = await c.get_upload(upload.id)
    assert got.pending["e" * 64].multipart_id == "mp" and got.tag == "t" and got.files == [_f("y", "b")]
    # One blob's view: neither the manifest nor the other blobs.
    view = await c.get_upload(upload.id, blob="e" * 64)
    assert list(view.pending) == ["e" * 64] and view.files == [] and view.part_size == 8 << 20
    # A blob recorded as it verifies a pending one (one transaction where the catalog has them).
    assert await c.add_blob(Blob("f" * 64, 5, at(3), "blobs/sha256/ff/" + "f" * 64 + ".u"), verifies=upload.id)
    assert (await c.get_upload(upload.id)).pending["f" * 64].verified
    assert not await c.add_blob(Blob("f" * 64, 5, at(3)), verifies=upload.id)  # known: still verified, no error
    await c.delete_blob("f" * 64, at(99))
    # Many at once: the new ones are recorded, the known one is not, all are verified.
    assert await c.add_blobs([Blob("f" * 64, 5, at(3), "k/f"), Blob("a" * 64, 10, at(3))], verifies=upload.id) == {"f" * 64}
    got = await c.get_upload(upload.id)
    assert got.pending["f" * 64].verified and (await c.get_blobs(["f" * 64]))["f" * 64].key == "k/f"
    await c.delete_blob("f" * 64, at(99))
    cutoff = at(5)
    # a: referenced by a version; b: by an open upload; d: too young; c: collectable.
    assert [b.sha256 for b in await c.unreferenced_blobs(cutoff)] == ["c" * 64]
    assert not await c.delete_blob("a" * 64, cutoff) and not await c.delete_blob("d" * 64, cutoff)
    assert await c.delete_blob("c" * 64, cutoff)
    assert await c.get_blobs(["a" * 64, "c" * 64]) == {"a" * 64: Blob("a" * 64, 10, at(1))}
    assert [u.id for u in await c.stale_uploads(at(4))] == [upload.id] and await c.stale_uploads(at(3)) == []
    # Parts recorded in parallel never lose each other; verification shows, parts go.
    await asyncio.gather(*(c.record_part(upload.id, "e" * 64, n, f"etag{n}", n, at(7)) for n in range(1, 9)))
    got = await c.get_upload(upload.id)
    assert got.pending["e" * 64].parts == {n: (f"etag{n}", n) for n in range(1, 9)} and got.updated_at == at(7)
    await c.reset_parts(upload.id, "e" * 64)
    assert (await c.get_upload(upload.id)).pending["e" * 64].parts == {}
    await c.record_part(upload.id, "e" * 64, 1, "again", 5, at(7))
    await c.mark_verified(upload.id, "e" * 64, at(8))
    got = await c.get_upload(upload.id)
    assert got.pending["e" * 64].verified and got.pending["e" * 64].parts == {}
    await c.update_upload(got)  # a later write of the row keeps what the part rows say
    assert (await c.get_upload(upload.id)).pending["e" * 64].verified
    await c.delete_upload(upload.id)
    assert [b.sha256 for b in await c.unreferenced_blobs(cutoff)] == ["b" * 64]


async def test_provenance_blob_keys_and_shared_disks_round_trip(catalog):
    from remotegpu.domain.storage.models import Provenance, SharedDisk, SourceKind

    uow_factory, c = catalog
    ws1, ws2 = await _workspaces(uow_factory)
    repo = _repo(1, ws1)
    await c.add_repository(repo)
    # A blob kept where its upload assembled it; a version made by a training job; an upload made by an environment.
    assert await c.add_blob(Blob("a" * 64, 10, at(1), "blobs/sha256/aa/" + "a" * 64 + ".u1"))
    assert await c.add_blob(Blob("b" * 64, 10, at(1)))
    found = await c.get_blobs(["a" * 64, "b" * 64])
    assert found["a" * 64].object_key.endswith(".u1") and found["b" * 64].object_key == "blobs/sha256/bb/" + "b" * 64
    job = Provenance(SourceKind.JOB, "90000000-0000-0000-0000-000000000001")
    await c.add_version(Version(repo.id, 1, [_f("x", "a")], "u", at(2), source=job))
    await c.add_version(Version(repo.id, 2, [_f("x", "b")], "u", at(2)))
    assert [v.source for v in await c.list_versions(repo.id)] == [job, None]
    env = Provenance(SourceKind.ENVIRONMENT, "90000000-0000-0000-0000-000000000002")
    upload = Upload("70000000-0000-0000-0000-000000000002", repo.id, ws1, "u", at(3), at(3), [_f("y", "b")], 8 << 20, {},
                    source=env)
    await c.add_upload(upload)
    assert (await c.get_upload(upload.id)).source == env
    # Shared disks: one per workspace, resized in place, removed idempotently.
    assert await c.get_shared_disk(ws1) is None
    await c.put_shared_disk(SharedDisk(ws1, 5, at(1), at(1)))
    await c.put_shared_disk(SharedDisk(ws1, 8, at(1), at(4)))
    assert await c.get_shared_disk(ws1) == SharedDisk(ws1, 8, at(1), at(4)) and await c.get_shared_disk(ws2) is None
    await c.delete_shared_disk(ws1)
    await c.delete_shared_disk(ws1)
    assert await c.get_shared_disk(ws1) is None
