"""The image catalog through the API (in-memory persistence): who sees which image, what
an environment create accepts, deletes refused while in use, and the jobs' protocol
with the agent (reports, log offsets, cancel, time limit)."""

from __future__ import annotations

from datetime import timedelta

from remotegpu.application.images.service import JobUpdate
from remotegpu.domain.images.models import ImageStatus, JobStatus
from tests.conftest import signup
from tests.support.images import seed_images


def _container(client):
    from remotegpu.entrypoints.http.keys import CONTAINER

    return client.server.app[CONTAINER]


async def _env(client, account, ws, **image):
    return await client.post("/api/v1/environments", json={"name": f"e{len(image)}", "workspace_id": ws, **image},
                             headers=account.headers)


async def test_another_workspaces_private_image_is_not_found_anywhere(client):
    alice, bob = await signup(client), await signup(client)
    container = _container(client)
    image_id, _job, platform_id = await seed_images(container, alice.personal_workspace_id, alice.id)
    store = container.image_store()
    image = await store.get_image(image_id)
    image.status = ImageStatus.READY
    await store.update_image(image)

    assert (await client.get(f"/api/v1/images/{image_id}", headers=bob.headers)).status == 404
    listed = await (await client.get("/api/v1/images", headers=bob.headers)).json()
    assert [i["id"] for i in listed["items"]] == [platform_id]
    # Neither by id nor by reference can bob start from it.
    r = await _env(client, bob, bob.personal_workspace_id, image_id=image_id)
    assert r.status == 404, await r.text()
    r = await _env(client, bob, bob.personal_workspace_id, image=image.reference)
    assert r.status == 404, await r.text()
    # Alice can, and the environment runs the catalog's reference; the platform image works for bob.
    r = await _env(client, alice, alice.personal_workspace_id, image_id=image_id)
    assert r.status == 202, await r.text()
    assert (await r.json())["image"] == image.reference
    r = await _env(client, bob, bob.personal_workspace_id, image_id=platform_id)
    assert r.status == 202, await r.text()
    # In use: delete refused (alice made it).
    r = await client.delete(f"/api/v1/images/{image_id}", headers=alice.headers)
    assert r.status == 409 and (await r.json())["error"]["code"] == "image_in_use"


async def test_the_allowed_images_rule_still_holds_outside_the_catalog(client):
    alice = await signup(client)
    r = await _env(client, alice, alice.personal_workspace_id, image="evil/miner:1")
    assert r.status == 422 and (await r.json())["error"]["code"] == "image_not_allowed"
    r = await _env(client, alice, alice.personal_workspace_id, image="remotegpu/base:latest")
    assert r.status == 202
    r = await _env(client, alice, alice.personal_workspace_id, image="x:1", image_id="y")
    assert r.status == 422


async def test_pending_images_cannot_be_started_and_filters_work(client):
    alice = await signup(client)
    image_id, _job, platform_id = await seed_images(_container(client), alice.personal_workspace_id, alice.id)
    r = await _env(client, alice, alice.personal_workspace_id, image_id=image_id)
    assert r.status == 409 and (await r.json())["error"]["code"] == "image_not_ready"
    got = await (await client.get("/api/v1/images?visibility=platform", headers=alice.headers)).json()
    assert [i["id"] for i in got["items"]] == [platform_id]
    got = await (await client.get("/api/v1/images?q=pytorch", headers=alice.headers)).json()
    assert [i["id"] for i in got["items"]] == [platform_id] and got["items"][0]["metadata"]["cuda"] == "12.4"
    got = await (await client.get(f"/api/v1/images?workspace_id={alice.personal_workspace_id}&status=pending",
                                  headers=alice.headers)).json()
    assert [i["id"] for i in got["items"]] == [image_id]


async def test_publish_validates_and_seed_is_idempotent(client):
    admin = await signup(client, admin_container=_container(client))
    r = await client.post("/api/v1/images", json={"name": "Bad Name", "reference": "r.test/x:1"}, headers=admin.headers)
    assert r.status == 422 and (await r.json())["error"]["code"] == "invalid_image_name"
    r = await client.post("/api/v1/images", json={"name": "cuda", "tag": "12.4", "reference": "r.test/cuda:12.4",
                                                  "metadata": {"cuda": "12.4"}}, headers=admin.headers)
    assert r.status == 201, await r.text()
    r = await client.post("/api/v1/images", json={"name": "cuda2", "reference": "r.test/cuda:12.4"}, headers=admin.headers)
    assert r.status == 409
    service = _container(client).image_service()
    first = await service.seed("remotegpu/base:latest")
    again = await service.seed("remotegpu/base:latest")
    assert first.id == again.id and first.preload
    r = await client.delete(f"/api/v1/images/{first.id}", headers=admin.headers)
    assert r.status == 409 and (await r.json())["error"]["code"] == "image_is_base"


async def test_agent_reports_move_a_job_and_its_image(client):
    alice = await signup(client)
    container = _container(client)
    service, store = container.image_service(), container.image_store()
    image_id, job_id, _ = await seed_images(container, alice.personal_workspace_id, alice.id)
    job = await store.get_job(job_id)
    job.host_id, job.status = "host-1", JobStatus.QUEUED
    await store.update_job(job)
    assert [j.id for j in await service.orders_for("host-1")] == [job_id]
    assert await service.orders_for("host-2") == []
    await service.apply_updates("host-1", [JobUpdate(job_id, "running", 0, "step 1\n", "step 1")])
    await service.apply_updates("host-1", [JobUpdate(job_id, "running", 0, "step 1\n", "step 1")])  # a repeated report
    await service.apply_updates("host-2", [JobUpdate(job_id, "succeeded")])  # not its job: ignored
    job = await store.get_job(job_id)
    assert job.status is JobStatus.RUNNING and job.log == "step 1\n" and job.started_at is not None
    # Sent again from offset 0 with more (the agent had not heard the offset yet): only the new part is kept.
    await service.apply_updates("host-1", [JobUpdate(job_id, "succeeded", 0, "step 1\ndone\n", "done", "sha256:abc", 123, 1)])
    job, image = await store.get_job(job_id), await store.get_image(image_id)
    assert job.status is JobStatus.SUCCEEDED and job.log == "step 1\ndone\n"
    assert image.status is ImageStatus.READY and (image.digest, image.size_bytes, image.layers) == ("sha256:abc", 123, 1)
    r = await client.get(f"/api/v1/image-jobs/{job_id}", headers=alice.headers)
    assert (await r.json())["status"] == "succeeded"


async def test_cancel_and_time_limit(client):
    alice = await signup(client)
    container = _container(client)
    service, store = container.image_service(), container.image_store()
    image_id, job_id, _ = await seed_images(container, alice.personal_workspace_id, alice.id)
    # Running: cancel is asked of the agent, which reports "cancelled".
    r = await client.post(f"/api/v1/image-jobs/{job_id}/cancel", headers=alice.headers)
    assert r.status == 200 and (await r.json())["cancel_requested"] is True
    job = await store.get_job(job_id)
    job.host_id = "h"
    await store.update_job(job)
    assert (await service.orders_for("h"))[0].cancel_requested
    await service.apply_updates("h", [JobUpdate(job_id, "cancelled", error="cancelled")])
    assert (await store.get_job(job_id)).status is JobStatus.CANCELLED
    assert (await store.get_image(image_id)).status is ImageStatus.FAILED
    # Past its time limit a running job fails on the server's side.
    image_id, job_id, _ = await seed_images(container, alice.personal_workspace_id, alice.id)
    job = await store.get_job(job_id)
    job.host_id, job.timeout_seconds = "h", 60
    job.started_at = container.clock().now() - timedelta(seconds=200)
    await store.update_job(job)
    assert await service.orders_for("h") == []
    job = await store.get_job(job_id)
    assert job.status is JobStatus.FAILED and "timed out" in job.error
    # Images are deletable once their job is over.
    assert (await client.delete(f"/api/v1/images/{image_id}", headers=alice.headers)).status == 204


async def test_images_count_against_the_storage_quota(client):
    alice = await signup(client)
    admin = await signup(client, admin_container=_container(client))
    container = _container(client)
    ws = alice.personal_workspace_id
    r = await client.put(f"/api/v1/workspaces/{ws}/quota", json={"max_storage_gib": 100}, headers=admin.headers)
    assert r.status == 200, await r.text()
    image_id, _job, _ = await seed_images(container, ws, alice.id)
    store = container.image_store()
    image = await store.get_image(image_id)
    image.size_bytes = 60 * 1024 ** 3
    await store.update_image(image)
    r = await client.post("/api/v1/environments", json={"name": "big", "workspace_id": ws, "disk_gib": 50}, headers=alice.headers)
    assert r.status == 409 and (await r.json())["error"]["code"] == "quota_exceeded", await r.text()
    r = await client.post("/api/v1/environments", json={"name": "small", "workspace_id": ws, "disk_gib": 40}, headers=alice.headers)
    assert r.status == 202, await r.text()
