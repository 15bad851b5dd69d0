"""Training jobs end to end on in-memory adapters: real HostAgents (in-memory job
runtime) joined through the in-process link, gang placement, lifecycle, logs."""

from __future__ import annotations

import pytest

from remotegpu.adapters.fleet.fake_probe import FakeGpuProbe
from remotegpu.adapters.runtime import InMemoryRuntime
from remotegpu.adapters.workloads.memory_runtime import InMemoryJobRuntime
from remotegpu.application.fleet.agent import HostAgent
from remotegpu.application.workloads.service import CreateJob
from remotegpu.domain.shared.errors import Conflict, NotFound
from remotegpu.domain.workloads.models import JobStatus
from remotegpu.entrypoints.embedded_agent import InProcessAgentLink
from tests.support.agent_fakes import FixedSystem, MemoryCredentials

pytestmark = pytest.mark.asyncio


async def job_host(world, name: str, gpus: str = "4xNVIDIA A100-SXM4-80GB"):
    _, join = await world.hosts.add(None, name)
    jobs = InMemoryJobRuntime()
    agent = HostAgent(InMemoryRuntime(), FakeGpuProbe(gpus, seed=name), InProcessAgentLink(world.agents), FixedSystem(64, 256),
                      name=name, join_token=join, credentials=MemoryCredentials(), training_nodes=jobs)
    await agent.ensure_registered()
    return agent, jobs


async def setup(world, hosts: int = 2):
    user = await world.user("alice")
    ws = await world.personal_ws(user)
    agents = [await job_host(world, f"gpu-{i}") for i in range(hosts)]
    return user, ws, agents


def svc(world):
    return world.container.training_job_service()


async def beat(agents, times: int = 1):
    for _ in range(times):
        for agent, _ in agents:
            await agent.beat_once()


def job_request(ws, **kw):
    base = dict(workspace_id=ws, name="train", command=["python", "train.py"], gpus_per_node=4,
                gpu_model="NVIDIA A100-SXM4-80GB", nodes=2, cpu_cores=4, memory_gib=16)
    return CreateJob(**{**base, **kw})


async def test_a_two_node_job_gets_both_nodes_at_once_runs_and_succeeds(world):
    user, ws, agents = await setup(world)
    job = await svc(world).create(user, job_request(ws))
    assert job.status is JobStatus.STARTING
    assert len(job.node_states) == 2 and len({n.host_id for n in job.node_states}) == 2
    assert all(len(n.gpu_uuids) == 4 for n in job.node_states)

    await beat(agents)
    specs = [s for _, rt in agents for s in rt.specs.values()]
    assert sorted(s.env["NODE_RANK"] for s in specs) == ["0", "1"]
    for s in specs:
        assert s.env["MASTER_ADDR"] == "node-0" and s.env["MASTER_PORT"] == "29500"
        assert s.env["NNODES"] == "2" and s.env["WORLD_SIZE"] == "8" and s.env["NPROC_PER_NODE"] == "4"
        assert s.hostfile == "node-0 slots=4\nnode-1 slots=4\n"
        assert s.alias == f"node-{s.env['NODE_RANK']}" and s.command == ["python", "train.py"]
    await beat(agents)
    assert (await svc(world).get(user, job.id)).status is JobStatus.RUNNING

    for _, rt in agents:
        for nid in rt.specs:
            rt.write(nid, f"hello from {nid}\n".encode())
    await beat(agents)
    _, nodes = await svc(world).log_nodes(user, job.id)
    assert [k for k, _ in nodes] == ["a0.n0", "a0.n1"]
    assert (await svc(world).read_log(user, job.id, "a0.n1")).startswith(b"hello from ")

    for _, rt in agents:
        for nid in rt.specs:
            rt.write(nid, b"done\n")
            rt.exit(nid, 0)
    await beat(agents, 3)
    done = await svc(world).get(user, job.id)
    assert done.status is JobStatus.SUCCEEDED and done.exit_code == 0
    assert done.node_states == []  # GPUs released
    assert sorted((e["rank"], e["exit_code"]) for e in done.exit_codes) == [(0, 0), (1, 0)]
    assert (await svc(world).read_log(user, job.id, "a0.n0")).endswith(b"done\n")
    # every log arrived, so the agents removed the containers
    assert all(not rt.specs for _, rt in agents)
    # the GPUs are free again: the same gang places at once
    again = await svc(world).create(user, job_request(ws, name="again"))
    assert again.status is JobStatus.STARTING


async def test_a_gang_waits_whole_with_its_reason_and_starts_when_capacity_frees(world):
    from remotegpu.domain.workspaces.quota import Quota

    user, ws, agents = await setup(world)
    admin = await world.user("root", admin=True)
    await world.container.workspace_service().set_quota(admin, ws, Quota(max_gpus=16))
    first = await svc(world).create(user, job_request(ws, name="first", nodes=1))
    assert first.status is JobStatus.STARTING
    big = await svc(world).create(user, job_request(ws, name="big"))
    assert big.status is JobStatus.QUEUED and big.node_states == []  # nothing held while it waits
    assert big.status_message == "queued: needs 2 nodes × 4 NVIDIA A100-SXM4-80GB; largest free: 1 node"
    await svc(world).cancel(user, first.id)  # frees a node: the big job starts in that commit
    assert (await svc(world).get(user, big.id)).status is JobStatus.STARTING


async def test_a_failed_node_restarts_the_whole_gang_then_fails_it(world):
    user, ws, agents = await setup(world)
    job = await svc(world).create(user, job_request(ws, max_retries=1))
    await beat(agents, 2)
    (_, rt1), (_, rt2) = agents
    failing = next(iter(rt2.specs)) if rt2.specs else next(iter(rt1.specs))
    owner = rt2 if failing in rt2.specs else rt1
    owner.exit(failing, 3)
    await beat(agents, 2)
    retried = await svc(world).get(user, job.id)
    assert retried.attempt == 1 and retried.status in (JobStatus.STARTING, JobStatus.RUNNING)
    assert "restarting the whole gang" in " ".join(h["reason"] for h in retried.history)
    # every node of attempt 0 was stopped (the healthy one too); attempt 1 runs anew
    await beat(agents, 2)
    attempt1 = [nid for _, rt in agents for nid, st in rt.status.items() if ".a1." in nid and st == "running"]
    assert len(attempt1) == 2
    assert not [nid for _, rt in agents for nid, st in rt.status.items() if ".a0." in nid and st == "running"]
    # the second failure ends it
    for _, rt in agents:
        for nid in rt.specs:
            if nid.endswith(".n1") and ".a1." in nid:
                rt.exit(nid, 7)
    await beat(agents, 2)
    failed = await svc(world).get(user, job.id)
    assert failed.status is JobStatus.FAILED and failed.exit_code == 7
    assert failed.node_states == []
    await beat(agents, 2)
    assert not [nid for _, rt in agents for nid, st in rt.status.items() if st == "running"]


async def test_cancel_releases_the_gpus_and_stops_the_nodes(world):
    user, ws, agents = await setup(world)
    job = await svc(world).create(user, job_request(ws))
    await beat(agents, 2)
    cancelled = await svc(world).cancel(user, job.id)
    assert cancelled.status is JobStatus.CANCELLED and cancelled.node_states == []
    with pytest.raises(Conflict):
        await svc(world).cancel(user, job.id)
    await beat(agents, 2)
    assert not [nid for _, rt in agents for nid, st in rt.status.items() if st == "running"]


async def test_time_limit_stops_the_gang(world):
    user, ws, agents = await setup(world)
    job = await svc(world).create(user, job_request(ws, time_limit_minutes=1))
    await beat(agents, 2)
    assert (await svc(world).get(user, job.id)).status is JobStatus.RUNNING
    world.clock.advance(seconds=61)
    await beat(agents, 2)
    ended = await svc(world).get(user, job.id)
    assert ended.status is JobStatus.TIMED_OUT and ended.exit_code == 124


async def test_another_tenant_cannot_see_the_job(world):
    user, ws, agents = await setup(world)
    job = await svc(world).create(user, job_request(ws, nodes=1))
    mallory = await world.user("mallory")
    with pytest.raises(NotFound):
        await svc(world).get(mallory, job.id)
    with pytest.raises(NotFound):
        await svc(world).cancel(mallory, job.id)


async def test_a_host_silent_for_a_minute_loses_its_nodes_and_the_gang_restarts(world):
    user, ws, agents = await setup(world, hosts=3)
    job = await svc(world).create(user, job_request(ws, max_retries=1))
    await beat(agents, 2)
    running = await svc(world).get(user, job.id)
    busy = {n.host_id for n in running.node_states}
    alive = [(a, rt) for a, rt in agents if a.host_id not in busy] + [
        next((a, rt) for a, rt in agents if a.host_id in busy)]
    world.clock.advance(seconds=20)
    await world.agents.mark_offline_hosts()  # offline, but a short silence kills nothing
    assert (await svc(world).get(user, job.id)).status is JobStatus.RUNNING
    world.clock.advance(seconds=45)
    for a, _ in alive:  # these keep beating; the other busy host stays silent
        await a.beat_once()
    await world.agents.mark_offline_hosts()
    restarted = await svc(world).get(user, job.id)
    assert restarted.attempt == 1, restarted.status_message
    lost = [e for e in restarted.exit_codes if e["state"] == "lost"]
    assert lost and "silent" in lost[0]["message"]
    # the new attempt avoids the silent host
    assert all(n.host_id in {a.host_id for a, _ in alive} for n in restarted.node_states)


async def test_jobs_count_against_the_workspace_quota_and_wait_for_it(world):
    from remotegpu.domain.shared.errors import QuotaExceeded
    from remotegpu.domain.workspaces.quota import Quota

    user, ws, agents = await setup(world)
    admin = await world.user("root", admin=True)
    await world.container.workspace_service().set_quota(admin, ws, Quota(max_gpus=4))
    with pytest.raises(QuotaExceeded):  # bigger than the whole quota: refused at once
        await svc(world).create(user, job_request(ws))
    first = await svc(world).create(user, job_request(ws, name="first", nodes=1))
    assert first.status is JobStatus.STARTING
    second = await svc(world).create(user, job_request(ws, name="second", nodes=1))
    assert second.status is JobStatus.QUEUED and "quota" in second.status_message  # room on the fleet, not in the quota
    # an environment sees the job's GPUs too
    from remotegpu.application.environments.service import CreateRequest
    with pytest.raises(QuotaExceeded):
        await world.envs.create(user, CreateRequest(workspace_id=ws, name="e", gpu_count=1, gpu_model="NVIDIA A100-SXM4-80GB"))
    await svc(world).cancel(user, first.id)
    assert (await svc(world).get(user, second.id)).status is JobStatus.STARTING


async def test_logs_are_kept_for_the_retention_period_then_deleted(world):
    user, ws, agents = await setup(world, hosts=1)
    job = await svc(world).create(user, job_request(ws, nodes=1))
    await beat(agents)
    (_, rt), = agents
    (nid,) = rt.specs
    rt.write(nid, b"hello\n")
    rt.exit(nid, 0)
    await beat(agents, 3)
    assert (await svc(world).read_log(user, job.id, "a0.n0")) == b"hello\n"
    world.clock.advance(days=29)
    assert await svc(world).purge_old_logs(30) == []
    world.clock.advance(days=2)
    handlers = world.container.task_handlers()
    await handlers["workloads.purge_job_logs"]()  # what the maintenance loop / worker runs
    _, nodes = await svc(world).log_nodes(user, job.id)
    assert nodes == []


async def test_a_job_runtime_that_cannot_list_loses_no_node(world):
    user, ws, agents = await setup(world)
    job = await svc(world).create(user, job_request(ws))
    await beat(agents, 2)
    assert (await svc(world).get(user, job.id)).status is JobStatus.RUNNING
    (_, rt), _ = agents

    async def broken():
        raise RuntimeError("docker is restarting")

    rt.list = broken
    await beat(agents, 2)
    assert (await svc(world).get(user, job.id)).status is JobStatus.RUNNING
