"""Billing per node: a 2-node training job run by two real HostAgents (in-memory job
runtime, in-process link) is metered node by node — each node's GPUs, CPU cores and
memory from the moment its agent reports it running until it exits — and shows in
usage (per node, per job) and in the month's bill; a gang restart bills the new
attempt's nodes apart. On the in-memory store, SQLite and PostgreSQL (migrated schema)."""

from __future__ import annotations

from remotegpu.application.workloads.service import CreateJob
from remotegpu.domain.billing.money import rate
from remotegpu.domain.workloads.models import JobStatus
from tests.integration.test_billing_lifecycle import MODEL, world  # noqa: F401 - the billing worlds
from tests.unit.workloads.test_job_lifecycle import beat, job_host


def _node_cost(gpus: int, cores: int, gib: int, seconds: int) -> int:
    return rate(gpus, 1000, seconds, 3600) + rate(cores, 10, seconds, 3600) + rate(gib, 1, seconds, 3600)


async def test_a_two_node_job_is_billed_per_node_in_usage_and_bill(world):  # noqa: F811
    admin = await world.user("root", admin=True)
    alice = await world.user("alice")
    ws = await world.personal_ws(alice)
    billing = world.container.billing_service()
    for kind, model, price in (("gpu", MODEL, 1000), ("cpu", "", 10), ("memory", "", 1)):
        await billing.set_price(admin, kind, model, price, None)
    agents = [await job_host(world, f"gpu-{i}") for i in range(2)]
    jobs = world.container.training_job_service()
    metering = world.container.metering()

    job = await jobs.create(alice, CreateJob(workspace_id=ws, name="train", command=["python", "train.py"], gpus_per_node=2,
                                             gpu_model=MODEL, nodes=2, cpu_cores=3, memory_gib=5, max_retries=1))
    await beat(agents, 2)  # containers started, then reported running: both nodes' compute starts now
    assert (await jobs.get(alice, job.id)).status is JobStatus.RUNNING
    runtime = {rt.specs[nid].env["NODE_RANK"]: (rt, nid) for _, rt in agents for nid in rt.specs}

    world.clock.advance(seconds=600)
    rt, nid = runtime["1"]
    rt.exit(nid, 0)  # node 1 is done after 10 min …
    await beat(agents)
    world.clock.advance(seconds=300)
    await metering.run()  # a pass while node 0 still runs: its segment is open, node 1's closed
    rt, nid = runtime["0"]
    rt.exit(nid, 0)  # … node 0 after 15
    await beat(agents, 3)
    assert (await jobs.get(alice, job.id)).status is JobStatus.SUCCEEDED
    world.clock.advance(seconds=120)  # ended: nothing more is charged
    await metering.run()

    n0, n1 = f"{job.id}.a0.n0", f"{job.id}.a0.n1"
    by_node = await billing.usage(alice, ws, start=None, end=None, group_by="environment")
    groups = {g["key"]: g for g in by_node["groups"]}
    assert set(groups) == {n0, n1}
    assert groups[n0]["amount"] == _node_cost(2, 3, 5, 900) and groups[n1]["amount"] == _node_cost(2, 3, 5, 600)
    assert groups[n0]["seconds"] == 3 * 900 and groups[n1]["seconds"] == 3 * 600  # GPU, CPU and memory segments
    by_job = await billing.usage(alice, ws, start=None, end=None, group_by="job")
    assert by_job["groups"] == [{"key": job.id, "amount": _node_cost(2, 3, 5, 900) + _node_cost(2, 3, 5, 600),
                                 "seconds": 3 * 1500}]

    bill = await billing.bill(alice, ws, "2026-03")
    gpu_lines = sorted((line.environment_id, line.quantity, line.seconds) for line in bill.lines if line.kind == "gpu")
    assert gpu_lines == [(n0, 2, 900), (n1, 2, 600)]
    assert bill.total == bill.charged == by_node["total"]

    # A failed node restarts the gang: attempt 1's nodes are new subjects, billed from their own start.
    retry = await jobs.create(alice, CreateJob(workspace_id=ws, name="flaky", command=["x"], gpus_per_node=1, gpu_model=MODEL,
                                               nodes=2, cpu_cores=1, memory_gib=1, max_retries=1))
    await beat(agents, 2)
    world.clock.advance(seconds=60)
    first = [(rt, nid) for _, rt in agents for nid in rt.specs if nid.startswith(retry.id)]
    first[0][0].exit(first[0][1], 3)
    await beat(agents, 3)  # the gang fails as one: its other node stopped, queued again, placed, running
    await beat(agents, 2)
    assert (await jobs.get(alice, retry.id)).attempt == 1
    world.clock.advance(seconds=30)
    await jobs.cancel(alice, retry.id)
    await metering.run()
    usage = await billing.usage(alice, ws, start=None, end=None, group_by="environment")
    seconds = {g["key"]: g["seconds"] // 3 for g in usage["groups"] if g["key"].startswith(retry.id)}
    assert seconds == {f"{retry.id}.a0.n0": 60, f"{retry.id}.a0.n1": 60, f"{retry.id}.a1.n0": 30, f"{retry.id}.a1.n1": 30}
