"""/api/v1/training-jobs over HTTP: create, list, get, logs (kept, downloadable, live
over SSE), cancel; a real HostAgent (in-memory runtimes) runs the nodes."""

from __future__ import annotations

import asyncio
import json

import pytest

from remotegpu.adapters.fleet.fake_probe import FakeGpuProbe
from remotegpu.adapters.runtime import InMemoryRuntime
from remotegpu.adapters.workloads.memory_runtime import InMemoryJobRuntime
from remotegpu.application.fleet.agent import HostAgent
from remotegpu.entrypoints.embedded_agent import InProcessAgentLink
from tests.conftest import signup
from tests.support.agent_fakes import FixedSystem, MemoryCredentials

pytestmark = pytest.mark.asyncio


async def _agent(container, name="gpu-a"):
    _, join = await container.host_service().add(None, name)
    jobs = InMemoryJobRuntime()
    agent = HostAgent(InMemoryRuntime(), FakeGpuProbe("2xNVIDIA L4 24GB", seed=name), InProcessAgentLink(container.agent_service()),
                      FixedSystem(16, 64), name=name, join_token=join, credentials=MemoryCredentials(), training_nodes=jobs)
    await agent.ensure_registered()
    return agent, jobs


async def _sse(response, until: str, timeout: float = 10.0) -> list[tuple[str, dict]]:
    events, name = [], None
    async with asyncio.timeout(timeout):
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
                if name == until:
                    return events
    return events


async def test_training_job_api_end_to_end(client, container):
    alice = await signup(client)
    ws = alice.personal_workspace_id
    agent, jobs = await _agent(container)
    r = await client.post("/api/v1/training-jobs", headers=alice.headers, json={
        "workspace_id": ws, "name": "train", "command": ["python", "train.py"], "gpus_per_node": 2, "gpu_model": "NVIDIA L4 24GB",
        "cpu_cores": 2, "memory_gib": 4, "env": {"LR": "0.1"},
    })
    assert r.status == 201, await r.text()
    job = await r.json()
    assert job["status"] == "starting" and len(job["node_states"]) == 1 and len(job["node_states"][0]["gpu_uuids"]) == 2
    await agent.beat_once()
    (node_id, spec), = jobs.specs.items()
    assert spec.env["LR"] == "0.1" and spec.env["WORLD_SIZE"] == "2" and spec.env["NNODES"] == "1"

    listed = await (await client.get(f"/api/v1/training-jobs?workspace_id={ws}", headers=alice.headers)).json()
    assert listed["total"] == 1 and listed["items"][0]["id"] == job["id"]

    # live: the stream shows what the node prints and ends with the job
    stream = await client.get(f"/api/v1/training-jobs/{job['id']}/logs/stream", headers=alice.headers)
    assert stream.status == 200 and stream.headers["Content-Type"].startswith("text/event-stream")
    jobs.write(node_id, b"epoch 1\n")
    await agent.beat_once()
    jobs.write(node_id, b"epoch 2\n")
    jobs.exit(node_id, 0)
    for _ in range(3):
        await agent.beat_once()
    events = await _sse(stream, "end")
    text = "".join(e["data"] for n, e in events if n == "log")
    assert text == "epoch 1\nepoch 2\n"
    assert events[-1] == ("end", {"status": "succeeded", "exit_code": 0})
    assert [e["status"] for n, e in events if n == "status"][-1] == "succeeded"

    # kept after the end, downloadable
    logs = await (await client.get(f"/api/v1/training-jobs/{job['id']}/logs", headers=alice.headers)).json()
    assert logs == {"items": [{"node": "a0.n0", "attempt": 0, "rank": 0, "bytes": 16}], "total": 1}
    r = await client.get(f"/api/v1/training-jobs/{job['id']}/logs/a0.n0?download=true", headers=alice.headers)
    assert r.status == 200 and await r.text() == "epoch 1\nepoch 2\n"
    assert "attachment" in r.headers["Content-Disposition"]
    r = await client.get(f"/api/v1/training-jobs/{job['id']}/logs/a0.n0?offset=8", headers=alice.headers)
    assert await r.text() == "epoch 2\n"

    done = await (await client.get(f"/api/v1/training-jobs/{job['id']}", headers=alice.headers)).json()
    assert done["status"] == "succeeded" and done["exit_code"] == 0 and done["exit_codes"][0]["exit_code"] == 0
    r = await client.post(f"/api/v1/training-jobs/{job['id']}/cancel", headers=alice.headers)
    assert r.status == 409 and (await r.json())["error"]["code"] == "invalid_state"


async def test_create_refuses_bad_input_and_queues_what_cannot_fit(client, container):
    alice = await signup(client)
    ws = alice.personal_workspace_id
    await _agent(container)
    base = {"workspace_id": ws, "name": "j", "command": ["true"]}
    r = await client.post("/api/v1/training-jobs", headers=alice.headers, json={**base, "env": {"LD_PRELOAD": "x"}})
    assert r.status == 422 and (await r.json())["error"]["code"] == "reserved_variable"
    r = await client.post("/api/v1/training-jobs", headers=alice.headers, json={**base, "name": "Bad Name"})
    assert r.status == 422
    r = await client.post("/api/v1/training-jobs", headers=alice.headers, json={**base, "nodes": 2, "gpus_per_node": 1})
    assert r.status == 201
    queued = await r.json()
    assert queued["status"] == "queued" and queued["node_states"] == []
    assert "needs 2 nodes × 1 GPU" in queued["status_message"]
    r = await client.post(f"/api/v1/training-jobs/{queued['id']}/cancel", headers=alice.headers)
    assert r.status == 200 and (await r.json())["status"] == "cancelled"


async def test_openapi_documents_training_jobs(client):
    spec = await (await client.get("/api/openapi.json")).json()
    for path in ("/api/v1/training-jobs", "/api/v1/training-jobs/{job_id}", "/api/v1/training-jobs/{job_id}/cancel",
                 "/api/v1/training-jobs/{job_id}/logs", "/api/v1/training-jobs/{job_id}/logs/{node}",
                 "/api/v1/training-jobs/{job_id}/logs/stream"):
        assert path in spec["paths"], path
