"""A job's output on in-memory adapters: real HostAgents (in-memory job runtime) sending
through the in-process sink to the receiver and the storage service; the path rules."""

from __future__ import annotations

import asyncio

import pytest

from remotegpu.adapters.fleet.fake_probe import FakeGpuProbe
from remotegpu.adapters.runtime import InMemoryRuntime
from remotegpu.adapters.workloads.memory_runtime import InMemoryJobRuntime
from remotegpu.adapters.workloads.output_sinks import InProcessJobOutputSink
from remotegpu.application.fleet.agent import HostAgent
from remotegpu.domain.shared.errors import InvalidInput, NotFound
from remotegpu.domain.storage.models import Kind, SourceKind
from remotegpu.domain.workloads.models import JobStatus, check_output_path
from remotegpu.entrypoints.embedded_agent import InProcessAgentLink
from tests.support.agent_fakes import FixedSystem, MemoryCredentials
from tests.unit.workloads.test_job_lifecycle import beat, job_request, svc

pytestmark = pytest.mark.asyncio


async def output_host(world, name: str):
    _, join = await world.hosts.add(None, name)
    jobs = InMemoryJobRuntime()
    agent = HostAgent(InMemoryRuntime(), FakeGpuProbe("4xNVIDIA A100-SXM4-80GB", seed=name), InProcessAgentLink(world.agents),
                      FixedSystem(64, 256), name=name, join_token=join, credentials=MemoryCredentials(), training_nodes=jobs,
                      job_outputs=InProcessJobOutputSink(world.container.job_output_receiver()))
    await agent.ensure_registered()
    return agent, jobs


async def settle(agents):
    for _ in range(50):
        await beat(agents)
        pending = [t for agent, _ in agents for t in agent._collecting.values()]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        elif all(not rt.specs for _, rt in agents):
            return
    raise AssertionError("the agents did not settle")


async def test_output_paths_are_absolute_directories_without_dot_dot():
    assert check_output_path("/output/") == "/output"
    assert check_output_path("//work/./out") == "/work/out"
    for bad in ("output", "/", "/a/../b", "/x\x00"):
        with pytest.raises(InvalidInput):
            check_output_path(bad)


async def test_node_0s_output_becomes_the_next_version_and_a_failed_job_makes_none(world):
    user = await world.user("alice")
    ws = await world.personal_ws(user)
    storage = world.container.storage_service()
    model = await storage.create(user, Kind.MODEL, ws, "trained")
    agents = [await output_host(world, f"gpu-{i}") for i in range(2)]

    job = await svc(world).create(user, job_request(ws, output={"kind": "model", "name": "trained", "path": "/ckpt"}))
    assert job.output.state == "waiting" and job.output.repository_id == model.id
    await beat(agents, 2)
    for _, rt in agents:
        for nid, spec in list(rt.specs.items()):
            rt.files[nid] = {"/ckpt": {"model.pt": b"weights of " + spec.env["NODE_RANK"].encode()}}
            rt.exit(nid, 0)
    await settle(agents)
    done = await svc(world).get(user, job.id)
    assert done.status is JobStatus.SUCCEEDED
    assert (done.output.state, done.output.version) == ("done", 1), done.output
    version = (await storage.versions(user, Kind.MODEL, model.id))[-1]
    assert [(f.path, f.size) for f in version.files] == [("model.pt", len(b"weights of 0"))]  # node 0's
    assert (version.source.kind, version.source.id) == (SourceKind.JOB, job.id)

    failing = await svc(world).create(user, job_request(ws, name="fails", output={"name": model.id, "path": "/ckpt"}))
    await beat(agents, 2)
    for _, rt in agents:
        for nid in list(rt.specs):
            rt.files[nid] = {"/ckpt": {"model.pt": b"never stored"}}
            rt.exit(nid, 0 if nid.endswith("n0") else 2)
    await settle(agents)
    failed = await svc(world).get(user, failing.id)
    assert failed.status is JobStatus.FAILED and failed.output.state == "skipped"
    assert len(await storage.versions(user, Kind.MODEL, model.id)) == 1

    # the receiver takes nothing for a node it is not collecting from
    with pytest.raises(NotFound):
        await world.container.job_output_receiver().expects(agents[0][0]._token, f"{job.id}.a0.n0")


async def test_another_workspaces_model_answers_404(world):
    alice, bob = await world.user("alice"), await world.user("bob")
    ws_a, ws_b = await world.personal_ws(alice), await world.personal_ws(bob)
    model = await world.container.storage_service().create(alice, Kind.MODEL, ws_a, "mine")
    for name in (model.id, "mine"):
        with pytest.raises(NotFound):
            await svc(world).create(bob, job_request(ws_b, output={"name": name}))
