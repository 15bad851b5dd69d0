"""GPU metrics of training jobs and inference replicas through the real agent → server
path: a batch's samples of a GPU a job node holds are tagged with the job, readable at
``/api/v1/metrics?scope=job`` by who may see the job (another tenant: 404); the host's
other GPU is not the job's."""

from __future__ import annotations

import json

from remotegpu.adapters.workloads.memory_runtime import InMemoryJobRuntime
from tests.e2e.test_metrics_api import _world
from tests.conftest import signup


async def test_a_jobs_gpus_are_tagged_with_the_job_and_authorized_like_it(aiohttp_client, tmp_path):
    container, client, admin, agent, link, control, probe = await _world(aiohttp_client, tmp_path)
    agent.training_nodes = InMemoryJobRuntime()
    try:
        user = await signup(client)
        other = await signup(client)
        await agent.beat_once()
        r = await client.post("/api/v1/training-jobs", json={
            "workspace_id": user.personal_workspace_id, "name": "train", "command": ["python", "train.py"],
            "gpus_per_node": 1, "cpu_cores": 1, "memory_gib": 1}, headers=user.headers)
        assert r.status == 201, await r.text()
        job_id = (await r.json())["id"]
        await agent.beat_once()  # the node starts
        await agent.beat_once()  # ... and is reported running
        job = await (await client.get(f"/api/v1/training-jobs/{job_id}", headers=user.headers)).json()
        assert job["status"] == "running", job
        held = job["node_states"][0]["gpu_uuids"]
        assert len(held) == 1

        control.write_text(json.dumps({"*": {"DCGM_FI_DEV_GPU_UTIL": 88}}))
        container.metrics_service().forget_tags()
        assert await agent.collector.collect_once() == 2 * 7
        await agent.beat_once()

        r = await client.get("/api/v1/metrics", params={"scope": "job", "id": job_id}, headers=user.headers)
        assert r.status == 200, await r.text()
        util = [i for i in (await r.json())["items"] if i["metric"] == "DCGM_FI_DEV_GPU_UTIL"]
        assert [(u["gpu_uuid"], u["value"], u["environment_id"], u["workspace_id"]) for u in util] == \
            [(held[0], 88.0, job_id, user.personal_workspace_id)]
        r = await client.get("/api/v1/metrics/history", params={"scope": "job", "id": job_id, "metric": "DCGM_FI_DEV_GPU_UTIL",
                                                                "step": 60}, headers=user.headers)
        assert r.status == 200 and len((await r.json())["series"]) == 1
        # the workspace's view counts the job too
        r = await client.get("/api/v1/metrics", params={"scope": "workspace", "id": user.personal_workspace_id},
                             headers=user.headers)
        assert {i["gpu_uuid"] for i in (await r.json())["items"] if i["gpu_uuid"]} == {held[0]}

        for params in ({"scope": "job", "id": job_id}, {"scope": "job", "id": "no-such-job"},
                       {"scope": "service", "id": job_id}):
            r = await client.get("/api/v1/metrics", params=params, headers=other.headers)
            assert r.status == 404, (params, await r.text())
        r = await client.get("/api/v1/metrics", params={"scope": "job"}, headers=user.headers)
        assert r.status == 422
    finally:
        await link.close()
