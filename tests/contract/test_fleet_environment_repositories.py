"""The repository contract for hosts, environments, allocations and the scheduling
lock: memory, SQLite and PostgreSQL behave alike (fixture ``uow_factory``, conftest.py).

After a Conflict a test opens a new unit of work: on PostgreSQL the failed one is unusable.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from remotegpu.domain.environments.models import Desired, Environment, EnvStatus, GpuAllocation, HostPort
from remotegpu.domain.fleet.models import ClusterNode, Gpu, Host, HostStatus, QuarantineEntry, parse_fake_gpus
from remotegpu.domain.shared.errors import Conflict
from remotegpu.domain.workspaces.quota import Usage

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)
WS1, WS2 = "10000000-0000-0000-0000-000000000001", "10000000-0000-0000-0000-000000000002"
OWNER = "00000000-0000-0000-0000-000000000001"


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def make_host(n: int, *, gpus: int | list[Gpu] = 2, **kw) -> Host:
    """Host ``n``; ``gpus``: how many fake H100s (UUIDs distinct per ``n``), or the list itself."""
    if isinstance(gpus, int):
        gpus = parse_fake_gpus(f"{gpus}xNVIDIA H100 80GB HBM3", seed=f"h{n}") if gpus else []
    values = dict(
        id=f"20000000-0000-0000-0000-{n:012d}", name=f"gpu-{n:02d}", cpu_cores=64, memory_gib=512, disk_gib=2000,
        address=f"10.0.0.{n}", private_address=f"192.168.0.{n}", created_at=at(n), gpus=gpus,
    )
    return Host(**{**values, **kw})


def make_env(n: int, workspace_id: str = WS1, **kw) -> Environment:
    values = dict(
        id=f"30000000-0000-0000-0000-{n:012d}", name=f"env-{n}", workspace_id=workspace_id, owner_id=OWNER,
        image="pytorch/pytorch:latest", gpu_count=1, gpu_model=None, cpu_cores=4, memory_gib=16,
        created_at=at(n), updated_at=at(n),
    )
    return Environment(**{**values, **kw})


async def add_hosts(uow_factory, *hosts: Host) -> None:
    async with uow_factory() as uow:
        for host in hosts:
            await uow.hosts.add(host)
        await uow.commit()


async def add_envs(uow_factory, *envs: Environment) -> None:
    async with uow_factory() as uow:
        for env in envs:
            await uow.environments.add(env)
        await uow.commit()


# --- hosts ------------------------------------------------------------------------------------


async def test_a_host_reads_back_with_gpus_labels_and_utilization(uow_factory):
    host = make_host(
        1, status=HostStatus.CORDONED, admin_status=HostStatus.CORDONED, labels={"zone": "b", "rack": "r7"}, last_heartbeat_at=at(5),
        join_token_hash="join-1", agent_token_hash="agent-1", runtime="docker", runtime_healthy=True,
        fake_gpus=True, port_range=(41000, 41999),
        gpus=[
            Gpu(0, "GPU-a", "NVIDIA A100-SXM4-80GB", 81920, numa_node=0, nvlink_group=0),
            Gpu(1, "GPU-b", "NVIDIA A100-SXM4-80GB", 81920, numa_node=None, nvlink_group=None, healthy=False),
        ],
        gpu_utilization={"GPU-a": 87, "GPU-b": 0},
        quarantined=[QuarantineEntry("env-9", "host-0", at(4)), QuarantineEntry("env-8", "", at(5))],
        cluster_nodes=[ClusterNode("node-a", True, False, 8, 7, 2, "63500m", "512Gi", {"nvidia.com/gpu.product": "NVIDIA-H100"}),
                       ClusterNode("node-b", False, True)],
    )
    await add_hosts(uow_factory, host)
    async with uow_factory() as uow:
        got = await uow.hosts.get(host.id)
        assert got == host
        assert got.port_range == (41000, 41999) and isinstance(got.port_range, tuple)
        assert got.last_heartbeat_at.tzinfo == timezone.utc
        assert await uow.hosts.get_by_name("gpu-01") == host
        assert await uow.hosts.get_by_join_token("join-1") == host
        assert await uow.hosts.get_by_agent_token("agent-1") == host
        assert await uow.hosts.get("nope") is None
        assert await uow.hosts.get_by_name("nope") is None
        assert await uow.hosts.get_by_join_token("agent-1") is None
        assert await uow.hosts.get_by_agent_token("join-1") is None


async def test_hosts_list_by_name_and_tokens_names_gpus_are_unique(uow_factory):
    # Hosts without tokens (NULL hashes) never collide.
    await add_hosts(uow_factory, make_host(3), make_host(1), make_host(2, gpus=0))
    async with uow_factory() as uow:
        assert [h.name for h in await uow.hosts.list()] == ["gpu-01", "gpu-02", "gpu-03"]
        assert [len(h.gpus) for h in await uow.hosts.list()] == [2, 0, 2]
    await add_hosts(uow_factory, make_host(4, gpus=0, join_token_hash="j", agent_token_hash="a"))
    for clash in (
        make_host(5, name="gpu-01", gpus=0),
        make_host(5, gpus=0, join_token_hash="j"),
        make_host(5, gpus=0, agent_token_hash="a"),
        make_host(5, gpus=make_host(1).gpus[:1]),  # a GPU UUID another host has
    ):
        async with uow_factory() as uow:
            with pytest.raises(Conflict):
                await uow.hosts.add(clash)
                await uow.commit()
    async with uow_factory() as uow:
        assert len(await uow.hosts.list()) == 4


async def test_update_replaces_only_its_own_gpus_and_a_gpu_moves_once_its_owner_let_go(uow_factory):
    one, two = make_host(1, gpus=4), make_host(2, gpus=0)
    await add_hosts(uow_factory, one, two)
    moved = one.gpus[3]
    async with uow_factory() as uow:
        host = await uow.hosts.get(one.id)
        host.gpus = [replace(g, healthy=g.index != 0) for g in host.gpus[:3]]  # one gone, one unhealthy
        host.set_admin_status(HostStatus.DRAINING)
        host.labels, host.gpu_utilization = {"zone": "c"}, {host.gpus[1].uuid: 50}
        host.agent_token_hash, host.join_token_hash = "agent", None
        host.allow_loopback, host.gpu_conflicts = True, {"GPU-elsewhere": two.id}
        await uow.hosts.update(host)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.hosts.get(one.id) == host
        assert await uow.hosts.get_by_agent_token("agent") == host
        assert await uow.hosts.gpu_owners([moved.uuid, one.gpus[0].uuid, "GPU-nobody"]) == {one.gpus[0].uuid: one.id}
    # The GPU that left host 1 shows up on host 2, at another index.
    async with uow_factory() as uow:
        other = await uow.hosts.get(two.id)
        other.gpus = [replace(moved, index=0)]
        await uow.hosts.update(other)
        await uow.commit()
    # Host 1 reporting it again while host 2 holds it: refused, host 2's row untouched
    # (an agent is trusted with its own host only; the service keeps such GPUs out).
    with pytest.raises(Conflict):
        async with uow_factory() as uow:
            back = await uow.hosts.get(one.id)
            back.gpus = back.gpus + [moved]
            await uow.hosts.update(back)
            await uow.commit()
    async with uow_factory() as uow:
        assert [g.uuid for g in (await uow.hosts.get(two.id)).gpus] == [moved.uuid]
        assert await uow.hosts.gpu_owners([moved.uuid]) == {moved.uuid: two.id}
        assert len((await uow.hosts.get(one.id)).gpus) == 3
    # Once host 2 let go of it, host 1 may take it back.
    async with uow_factory() as uow:
        other = await uow.hosts.get(two.id)
        other.gpus = []
        await uow.hosts.update(other)
        back = await uow.hosts.get(one.id)
        back.gpus = back.gpus + [moved]
        await uow.hosts.update(back)
        await uow.commit()
    async with uow_factory() as uow:
        assert [g.uuid for g in (await uow.hosts.get(one.id)).gpus] == [g.uuid for g in one.gpus]
        assert (await uow.hosts.get(two.id)).gpus == []
        # Updating a host that does not exist does nothing.
        await uow.hosts.update(make_host(9))
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.hosts.get(make_host(9).id) is None


async def test_the_admins_choice_reads_back_apart_from_the_status(uow_factory):
    # Offline but cordoned: the choice survives the host's silence (column admin_status, 0004).
    silent = make_host(1, status=HostStatus.OFFLINE, admin_status=HostStatus.CORDONED)
    fresh = make_host(2, status=HostStatus.OFFLINE)  # as HostService.add makes it
    await add_hosts(uow_factory, silent, fresh)
    async with uow_factory() as uow:
        got = {h.id: (h.status, h.admin_status) for h in await uow.hosts.list()}
        assert got == {silent.id: (HostStatus.OFFLINE, HostStatus.CORDONED), fresh.id: (HostStatus.OFFLINE, HostStatus.READY)}
        host = await uow.hosts.get(silent.id)
        host.set_admin_status(HostStatus.DRAINING)  # drained while offline: still offline
        await uow.hosts.update(host)
        await uow.commit()
    async with uow_factory() as uow:
        host = await uow.hosts.get(silent.id)
        assert (host.status, host.admin_status) == (HostStatus.OFFLINE, HostStatus.DRAINING)
        assert host.mark_online()
        await uow.hosts.update(host)
        await uow.commit()
    async with uow_factory() as uow:
        host = await uow.hosts.get_by_name(silent.name)
        assert (host.status, host.admin_status) == (HostStatus.DRAINING, HostStatus.DRAINING)


async def test_deleting_a_host_deletes_its_gpus(uow_factory):
    host = make_host(1)
    await add_hosts(uow_factory, host)
    async with uow_factory() as uow:
        await uow.hosts.delete(host.id)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.hosts.list() == []
        await uow.hosts.add(replace(host, id="20000000-0000-0000-0000-000000000099"))  # its GPU UUIDs are free again
        await uow.commit()


# --- environments ---------------------------------------------------------------------------


async def test_an_environment_reads_back_field_for_field_in_utc(uow_factory):
    plus_two = timezone(timedelta(hours=2))
    env = make_env(
        1, status=EnvStatus.RUNNING, desired=Desired.STOPPED, env={"WANDB_MODE": "offline", "EMPTY": ""},
        host_id=make_host(1).id, with_gpu=False, generation=3, gpu_model="NVIDIA H100 80GB HBM3",
        queued_at=datetime(2026, 3, 1, 14, 0, 0, 999999, tzinfo=plus_two), started_at=at(2),
        stop_after_minutes=120, idle_stop_minutes=30, idle_gpu_threshold=10, idle_since=at(3),
        last_activity_at=at(4), status_message="up", jupyter_token="secret", shared=True,
        secret_env={"HF_TOKEN": "v1:sealed-value"},
        last_gpu_uuids=["GPU-b", "GPU-a"],
    )
    await add_envs(uow_factory, env)
    async with uow_factory() as uow:
        got = await uow.environments.get(env.id)
    assert got == env
    assert got.queued_at == env.queued_at and got.queued_at.tzinfo == timezone.utc
    assert got.created_at.tzinfo == timezone.utc
    assert got.pending_events == []
    async with uow_factory() as uow:
        assert await uow.environments.get("nope") is None
        with pytest.raises(ValueError):
            await uow.environments.add(make_env(2, created_at=datetime(2026, 1, 1)))


async def test_events_are_appended_in_order_and_pending_events_cleared(uow_factory):
    env = make_env(1)
    env.transition(EnvStatus.STARTING, "placed on gpu-01", at(1))
    env.transition(EnvStatus.RUNNING, "container up", at(1))  # same instant: order kept
    async with uow_factory() as uow:
        await uow.environments.add(env)
        assert env.pending_events == []
        await uow.commit()
    async with uow_factory() as uow:
        env = await uow.environments.get(env.id)
        env.transition(EnvStatus.STOPPING, "user", at(1))
        env.transition(EnvStatus.STOPPED, "done", at(1))
        await uow.environments.update(env)
        assert env.pending_events == []
        await uow.environments.update(env)  # nothing pending: nothing appended
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.environments.get(env.id) == env
        events, total = await uow.environments.events(env.id, limit=10, offset=0)
        assert total == 4
        assert [(e.from_status, e.to_status) for e in events] == [
            (EnvStatus.QUEUED, EnvStatus.STARTING), (EnvStatus.STARTING, EnvStatus.RUNNING),
            (EnvStatus.RUNNING, EnvStatus.STOPPING), (EnvStatus.STOPPING, EnvStatus.STOPPED),
        ]
        assert [e.reason for e in events] == ["placed on gpu-01", "container up", "user", "done"]
        assert all(e.environment_id == env.id and e.at == at(1) and e.at.tzinfo == timezone.utc for e in events)
        page, total = await uow.environments.events(env.id, limit=2, offset=1)
        assert [e.reason for e in page] == ["container up", "user"] and total == 4
        assert await uow.environments.events("nope", limit=10, offset=0) == ([], 0)


async def test_events_from_a_rolled_back_update_are_not_kept(uow_factory):
    await add_envs(uow_factory, make_env(1))
    async with uow_factory() as uow:
        env = await uow.environments.get(make_env(1).id)
        env.transition(EnvStatus.STARTING, "placed", at(2))
        await uow.environments.update(env)
    async with uow_factory() as uow:
        assert (await uow.environments.get(env.id)).status is EnvStatus.QUEUED
        assert await uow.environments.events(env.id, limit=10, offset=0) == ([], 0)


async def test_list_filters_by_workspace_and_status_newest_first_and_pages(uow_factory):
    envs = [
        make_env(1), make_env(2, status=EnvStatus.RUNNING), make_env(3, WS2),
        make_env(4, status=EnvStatus.DELETED), make_env(5, status=EnvStatus.STOPPED),
    ]
    await add_envs(uow_factory, *envs)

    def ids(found):
        return [int(e.id[-3:]) for e in found]

    async with uow_factory() as uow:
        found, total = await uow.environments.list(workspace_ids=None, statuses=None, include_deleted=False, limit=10, offset=0)
        assert ids(found) == [5, 3, 2, 1] and total == 4
        found, total = await uow.environments.list(workspace_ids=None, statuses=None, include_deleted=True, limit=10, offset=0)
        assert ids(found) == [5, 4, 3, 2, 1] and total == 5
        found, total = await uow.environments.list(workspace_ids=[WS1], statuses=None, include_deleted=False, limit=2, offset=1)
        assert ids(found) == [2, 1] and total == 3
        found, total = await uow.environments.list(
            workspace_ids=[WS1, WS2], statuses=[EnvStatus.QUEUED, EnvStatus.RUNNING], include_deleted=False, limit=10, offset=0
        )
        assert ids(found) == [3, 2, 1] and total == 3
        found, total = await uow.environments.list(
            workspace_ids=[WS1], statuses=[EnvStatus.DELETED], include_deleted=True, limit=10, offset=0
        )
        assert ids(found) == [4] and total == 1
        assert await uow.environments.list(workspace_ids=[], statuses=None, include_deleted=True, limit=10, offset=0) == ([], 0)


async def test_list_by_status_is_fifo_by_queued_at_and_list_for_host_skips_deleted(uow_factory):
    host = make_host(1).id
    await add_envs(
        uow_factory,
        make_env(1, queued_at=at(30)),
        make_env(2, queued_at=at(10)),
        make_env(3, queued_at=at(10)),  # same queue time: creation breaks the tie
        make_env(4, status=EnvStatus.FAILED, queued_at=at(20)),
        make_env(5, status=EnvStatus.RUNNING, host_id=host),
        make_env(6, status=EnvStatus.DELETED, host_id=host),
        make_env(7, status=EnvStatus.STOPPED, host_id=host),
    )
    async with uow_factory() as uow:
        queue = await uow.environments.list_by_status([EnvStatus.QUEUED, EnvStatus.FAILED])
        assert [int(e.id[-3:]) for e in queue] == [2, 3, 4, 1]
        assert [int(e.id[-3:]) for e in await uow.environments.list_for_host(host)] == [5, 7]
        assert await uow.environments.list_for_host("elsewhere") == []


# --- allocations --------------------------------------------------------------------------


async def test_allocations_round_trip_and_release_is_idempotent(uow_factory):
    host = make_host(1, gpus=4)
    e1, e2 = make_env(1), make_env(2)
    await add_hosts(uow_factory, host)
    await add_envs(uow_factory, e1, e2)
    g = [gpu.uuid for gpu in host.gpus]
    async with uow_factory() as uow:
        await uow.allocations.add_gpus([GpuAllocation(e1.id, host.id, g[1]), GpuAllocation(e1.id, host.id, g[0])])
        await uow.allocations.add_gpus([GpuAllocation(e2.id, host.id, g[2])])
        await uow.allocations.add_gpus([])
        await uow.allocations.add_ports([HostPort(host.id, 40022, "ssh", e1.id), HostPort(host.id, 40888, "jupyter", e1.id)])
        await uow.allocations.add_ports([HostPort(host.id, 40023, "ssh", e2.id)])
        await uow.allocations.add_ports([])
        await uow.commit()
    async with uow_factory() as uow:
        assert sorted(a.gpu_uuid for a in await uow.allocations.gpus()) == sorted(g[:3])
        assert {a.environment_id for a in await uow.allocations.gpus()} == {e1.id, e2.id}
        assert await uow.allocations.gpus_of(e1.id) == sorted(
            [GpuAllocation(e1.id, host.id, g[0]), GpuAllocation(e1.id, host.id, g[1])], key=lambda a: a.gpu_uuid
        )
        assert await uow.allocations.ports_of(e1.id) == [HostPort(host.id, 40022, "ssh", e1.id), HostPort(host.id, 40888, "jupyter", e1.id)]
        assert await uow.allocations.ports_on_host(host.id) == {40022, 40023, 40888}
        assert await uow.allocations.ports_on_host("elsewhere") == set()
        await uow.allocations.release(e1.id)
        await uow.allocations.release(e1.id)
        await uow.allocations.release("never-allocated")
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.allocations.gpus() == [GpuAllocation(e2.id, host.id, g[2])]
        assert await uow.allocations.gpus_of(e1.id) == [] and await uow.allocations.ports_of(e1.id) == []
        assert await uow.allocations.ports_on_host(host.id) == {40023}
        # Released GPUs and ports can be taken again.
        await uow.allocations.add_gpus([GpuAllocation(e2.id, host.id, g[0])])
        await uow.allocations.add_ports([HostPort(host.id, 40022, "ssh", e2.id)])
        await uow.commit()
    async with uow_factory() as uow:
        await uow.allocations.release(e1.id)  # idempotent across units of work too
        await uow.commit()


async def test_release_gpus_keeps_the_ports_a_stopped_environment_holds(uow_factory):
    host = make_host(1, gpus=2)
    e1, e2 = make_env(1), make_env(2)
    await add_hosts(uow_factory, host)
    await add_envs(uow_factory, e1, e2)
    g = [gpu.uuid for gpu in host.gpus]
    async with uow_factory() as uow:
        await uow.allocations.add_gpus([GpuAllocation(e1.id, host.id, g[0])])
        await uow.allocations.add_ports([HostPort(host.id, 40022, "ssh", e1.id)])
        await uow.commit()
    async with uow_factory() as uow:
        await uow.allocations.release_gpus(e1.id)
        await uow.allocations.release_gpus(e1.id)  # idempotent
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.allocations.gpus() == []
        assert await uow.allocations.ports_of(e1.id) == [HostPort(host.id, 40022, "ssh", e1.id)]
        # Still held: another environment cannot take the stopped one's port.
        with pytest.raises(Conflict):
            await uow.allocations.add_ports([HostPort(host.id, 40022, "ssh", e2.id)])
            await uow.commit()
    async with uow_factory() as uow:
        await uow.allocations.release_ports(e1.id)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.allocations.ports_of(e1.id) == []
        await uow.allocations.add_ports([HostPort(host.id, 40022, "ssh", e2.id)])
        await uow.commit()


async def test_a_gpu_allocated_twice_in_one_unit_of_work_is_a_conflict(uow_factory):
    host = make_host(1)
    await add_hosts(uow_factory, host)
    await add_envs(uow_factory, make_env(1), make_env(2))
    async with uow_factory() as uow:
        await uow.allocations.add_gpus([GpuAllocation(make_env(1).id, host.id, host.gpus[0].uuid)])
        with pytest.raises(Conflict):
            await uow.allocations.add_gpus([GpuAllocation(make_env(2).id, host.id, host.gpus[0].uuid)])
            await uow.commit()
    async with uow_factory() as uow:
        assert await uow.allocations.gpus() == []


async def test_two_units_of_work_taking_the_same_gpu_exactly_one_commits(uow_factory):
    """Both add the same GPU while the other's transaction is open. PostgreSQL and
    SQLite make the later insert wait for the first transaction, then refuse it;
    memory refuses whichever commits second. Either way: one Conflict, one row."""
    host = make_host(1)
    await add_hosts(uow_factory, host)
    await add_envs(uow_factory, make_env(1), make_env(2))
    gpu = host.gpus[0].uuid
    first_added = asyncio.Event()

    async def take(env: Environment, *, first: bool) -> str:
        if not first:
            await first_added.wait()
        try:
            async with uow_factory() as uow:
                await uow.allocations.add_gpus([GpuAllocation(env.id, host.id, gpu)])
                if first:
                    first_added.set()
                    await asyncio.sleep(0.05)
                await uow.commit()
        except Conflict:
            return "conflict"
        return "committed"

    results = await asyncio.wait_for(asyncio.gather(take(make_env(1), first=True), take(make_env(2), first=False)), timeout=10)
    assert sorted(results) == ["committed", "conflict"]
    async with uow_factory() as uow:
        held = await uow.allocations.gpus()
    winner = make_env(1) if results[0] == "committed" else make_env(2)
    assert held == [GpuAllocation(winner.id, host.id, gpu)]


async def test_a_stale_unit_of_work_cannot_take_a_gpu_committed_meanwhile(uow_factory):
    host = make_host(1)
    await add_hosts(uow_factory, host)
    await add_envs(uow_factory, make_env(1), make_env(2))
    gpu = host.gpus[0].uuid
    async with uow_factory() as stale:
        assert await stale.allocations.gpus() == []  # its view: the GPU is free
        async with uow_factory() as other:
            await other.allocations.add_gpus([GpuAllocation(make_env(1).id, host.id, gpu)])
            await other.commit()
        with pytest.raises(Conflict):
            await stale.allocations.add_gpus([GpuAllocation(make_env(2).id, host.id, gpu)])
            await stale.commit()


async def test_a_host_port_is_unique_per_host_only(uow_factory):
    h1, h2 = make_host(1), make_host(2)
    await add_envs(uow_factory, make_env(1), make_env(2))
    async with uow_factory() as uow:
        await uow.allocations.add_ports([HostPort(h1.id, 40022, "ssh", make_env(1).id)])
        await uow.allocations.add_ports([HostPort(h2.id, 40022, "ssh", make_env(2).id)])  # other host: fine
        await uow.commit()
    async with uow_factory() as uow:
        with pytest.raises(Conflict):
            await uow.allocations.add_ports([HostPort(h1.id, 40022, "jupyter", make_env(2).id)])
            await uow.commit()
    async with uow_factory() as uow:
        assert await uow.allocations.ports_on_host(h1.id) == {40022}
        assert await uow.allocations.ports_of(make_env(2).id) == [HostPort(h2.id, 40022, "ssh", make_env(2).id)]


async def test_allocations_need_an_existing_environment(uow_factory):
    async with uow_factory() as uow:
        with pytest.raises(Conflict):
            await uow.allocations.add_gpus([GpuAllocation("no-such-env", "h", "GPU-x")])
            await uow.commit()


# --- workspace usage ----------------------------------------------------------------------


async def test_workspace_usage_counts_what_its_environments_hold(uow_factory):
    host = make_host(1, gpus=8)
    g = [gpu.uuid for gpu in host.gpus]
    envs = [
        make_env(1, status=EnvStatus.RUNNING, cpu_cores=8, memory_gib=64, gpu_count=2, disk_gib=100),
        make_env(2, status=EnvStatus.STARTING, cpu_cores=4, memory_gib=32),  # disk_gib: 50 by default
        make_env(3, status=EnvStatus.LOST, cpu_cores=2, memory_gib=8, disk_gib=20),
        make_env(4, status=EnvStatus.QUEUED, cpu_cores=16, memory_gib=128, disk_gib=30),  # holds its disk's share only
        make_env(5, status=EnvStatus.STOPPED, cpu_cores=16, memory_gib=128, disk_gib=200),  # keeps its disk
        make_env(6, status=EnvStatus.DELETED, cpu_cores=16, memory_gib=128, disk_gib=500),  # not counted at all
        make_env(7, WS2, status=EnvStatus.RUNNING, cpu_cores=32, memory_gib=256, disk_gib=10),  # other workspace
        make_env(8, status=EnvStatus.DELETING, cpu_cores=1, memory_gib=1, disk_gib=5),  # its disk is not gone yet
    ]
    await add_hosts(uow_factory, host)
    await add_envs(uow_factory, *envs)
    async with uow_factory() as uow:
        await uow.allocations.add_gpus([GpuAllocation(envs[0].id, host.id, g[0]), GpuAllocation(envs[0].id, host.id, g[1])])
        await uow.allocations.add_gpus([GpuAllocation(envs[1].id, host.id, g[2])])
        await uow.allocations.add_gpus([GpuAllocation(envs[6].id, host.id, g[3])])
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.workspaces.usage(WS1) == Usage(gpus=3, environments=6, cpu_cores=14, memory_gib=104, storage_gib=405)
        assert await uow.workspaces.usage(WS2) == Usage(gpus=1, environments=1, cpu_cores=32, memory_gib=256, storage_gib=10)
        assert await uow.workspaces.usage("empty") == Usage()
        await uow.allocations.release(envs[0].id)
        assert (await uow.workspaces.usage(WS1)).gpus == 1  # a unit of work sees its own changes
        deleted = replace(envs[4], status=EnvStatus.DELETED)
        await uow.environments.update(deleted)
        assert (await uow.workspaces.usage(WS1)).storage_gib == 205  # deleting frees the disk


# --- the scheduling lock ------------------------------------------------------------------


async def test_lock_scheduling_serialises_read_modify_write(uow_factory):
    """Two units of work each lock, read a counter, sleep, write counter + 1: both
    increments survive. (PostgreSQL: two connections; SQLite and memory: the process lock.)"""
    await add_hosts(uow_factory, make_host(1, gpus=0, cpu_cores=0))
    host_id = make_host(1).id

    async def increment():
        async with uow_factory() as uow:
            await uow.lock_scheduling()
            await uow.lock_scheduling()  # again in the same unit of work: no self-deadlock
            host = await uow.hosts.get(host_id)
            await asyncio.sleep(0.05)
            host.cpu_cores += 1
            await uow.hosts.update(host)
            await uow.commit()

    await asyncio.wait_for(asyncio.gather(increment(), increment()), timeout=10)
    async with uow_factory() as uow:
        assert (await uow.hosts.get(host_id)).cpu_cores == 2


@pytest.mark.parametrize("ending", ["commit", "rollback", "exit", "exception"])
async def test_the_scheduling_lock_ends_with_the_transaction(uow_factory, ending):
    async with uow_factory() as uow:  # schema and connections warmed up
        await uow.hosts.list()
    try:
        async with uow_factory() as uow:
            await uow.lock_scheduling()
            if ending == "commit":
                await uow.commit()
            elif ending == "rollback":
                await uow.rollback()
            elif ending == "exception":
                raise RuntimeError("use case failed")
            # A unit of work that ended its transaction does not block others.
            async with uow_factory() as other:
                if ending != "exit":
                    await asyncio.wait_for(other.lock_scheduling(), timeout=5)
    except RuntimeError:
        pass
    async with uow_factory() as other:
        await asyncio.wait_for(other.lock_scheduling(), timeout=5)
