"""Image store contract: memory, SQLite (migrated by Alembic) and PostgreSQL behave alike."""

from __future__ import annotations


import pytest

from remotegpu.adapters.db.uow import SqlUnitOfWork
from remotegpu.adapters.images.memory_store import InMemoryImageStore
from remotegpu.adapters.images.sql_store import SqlImageStore
from remotegpu.adapters.memory.store import InMemoryStore
from remotegpu.adapters.memory.uow import InMemoryUnitOfWork
from remotegpu.domain.fleet.models import Host
from remotegpu.domain.images.models import (
    CatalogImage,
    ImageJob,
    ImageSource,
    ImageStatus,
    JobKind,
    JobStatus,
    Visibility,
)
from remotegpu.domain.shared.errors import Conflict
from tests.contract.conftest import sql_sessions
from tests.contract.test_repositories import add_users, at, make_user, make_workspace


@pytest.fixture
async def stores(repo_backend, tmp_path):
    name, pg = repo_backend
    if name == "memory":
        store = InMemoryStore()
        yield (lambda: InMemoryUnitOfWork(store)), InMemoryImageStore()
        return
    async with sql_sessions(repo_backend, tmp_path) as sessions:
        yield (lambda: SqlUnitOfWork(sessions)), SqlImageStore(sessions)


def _image(n: int, ws: str | None, **kw) -> CatalogImage:
    return CatalogImage(
        id=f"60000000-0000-0000-0000-{n:012d}", name=f"img{n}", tag="v1", reference=f"reg.test/img{n}:v1",
        visibility=Visibility.WORKSPACE if ws else Visibility.PLATFORM, workspace_id=ws, created_by=None,
        created_at=at(n), updated_at=at(n), **kw,
    )


async def _workspaces(uow_factory) -> tuple[str, str]:
    owner = make_user(1)
    await add_users(uow_factory, owner)
    ids = []
    for n in (1, 2):
        ws = make_workspace(n, owner)
        async with uow_factory() as uow:
            await uow.workspaces.add(ws)
            await uow.commit()
        ids.append(ws.id)
    return ids[0], ids[1]


async def test_images_round_trip_and_visibility(stores):
    uow_factory, store = stores
    ws1, ws2 = await _workspaces(uow_factory)
    platform = _image(1, None, metadata={"cuda": "12.4"}, size_bytes=5 * 1024 ** 3, digest="sha256:aa", layers=3)
    mine = _image(2, ws1, status=ImageStatus.PENDING, source=ImageSource.SAVE, size_bytes=100)
    theirs = _image(3, ws2, size_bytes=7)
    for image in (platform, mine, theirs):
        await store.add_image(image)
    with pytest.raises(Conflict):
        await store.add_image(CatalogImage(**{**_image(4, ws1).__dict__, "reference": mine.reference}))
    assert await store.get_image(platform.id) == platform
    assert await store.find_image(mine.reference) == mine
    assert {i.id for i in await store.list_images([ws1])} == {platform.id, mine.id}
    assert {i.id for i in await store.list_images(None)} == {platform.id, mine.id, theirs.id}
    assert await store.workspace_image_bytes(ws1) == 100
    mine.status, mine.digest, mine.description = ImageStatus.FAILED, "sha256:bb", "x"
    await store.update_image(mine)
    assert (await store.get_image(mine.id)).digest == "sha256:bb"
    assert await store.workspace_image_bytes(ws1) == 0  # failed images hold nothing


async def test_jobs_and_host_images(stores):
    uow_factory, store = stores
    ws1, _ws2 = await _workspaces(uow_factory)
    image = _image(5, ws1, status=ImageStatus.PENDING)
    await store.add_image(image)
    job = ImageJob(id="70000000-0000-0000-0000-000000000001", kind=JobKind.SAVE, image_id=image.id, workspace_id=ws1,
                   created_by="u", created_at=at(1), target=image.reference, host_id="h1", env_id="e1")
    await store.add_job(job)
    job.append_log("line\n")
    job.status, job.started_at = JobStatus.RUNNING, at(2)
    await store.update_job(job)
    assert await store.get_job(job.id) == job
    assert [j.id for j in await store.list_jobs(host_id="h1", statuses=[JobStatus.RUNNING])] == [job.id]
    assert await store.list_jobs(host_id="h2") == []
    await store.delete_image(image.id)
    assert await store.get_job(job.id) is None

    for host_id in ("h1", "h2"):
        async with uow_factory() as uow:
            await uow.hosts.add(Host(id=f"80000000-0000-0000-0000-00000000000{host_id[-1]}", name=host_id))
            await uow.commit()
    h1, h2 = "80000000-0000-0000-0000-000000000001", "80000000-0000-0000-0000-000000000002"
    await store.set_host_images(h1, ["a:1", "b:1"])
    await store.set_host_images(h2, ["b:1"])
    await store.set_host_images(h1, ["b:1", "c:1"])
    assert await store.hosts_with_image("b:1") == {h1, h2}
    assert await store.hosts_with_image("a:1") == set()
    assert await store.hosts_with_image("c:1") == {h1}
