"""Agents are trusted with their own host only (issue 11, item 6).

* a GPU UUID another host owns stays that host's: the reporter's inventory leaves it
  out, the conflict is a host condition and an audit entry;
* reported addresses are IP literals or DNS names, never loopback (unless allowed),
  unspecified or link-local; a refused one stores nothing;
* an admin rotates (new one-time join token, old agent token dead at once) or revokes
  a host's token; the agent re-registers with the new token as the same host;
* an admin removes a host: its environments turn lost, their allocations are freed,
  a delete completes at once; stops and deletes stranded on a silent host finish.

Use cases on in-memory adapters (the ``world`` fixture of tests/unit/environments) and
real ``HostAgent``s on the in-memory runtime (tests/support/agent_fakes.py).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from remotegpu.adapters.fleet.fake_probe import FakeGpuProbe
from remotegpu.application.environments.service import CreateRequest
from remotegpu.application.fleet.agent_protocol import HostReport
from remotegpu.application.fleet.ports import AgentTokenRejected
from remotegpu.domain.environments.models import EnvStatus
from remotegpu.domain.fleet.addresses import check_address
from remotegpu.domain.fleet.models import Gpu, Host, HostStatus
from remotegpu.domain.shared.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from tests.support.agent_fakes import memory_host_agent
from tests.unit.environments.conftest import FakeHost, world  # noqa: F401 - the fixture

L4 = "NVIDIA L4 24GB"


def req(ws: str, name: str, gpus: int = 1, disk_gib: int = 50) -> CreateRequest:
    return CreateRequest(workspace_id=ws, name=name, gpu_count=gpus, cpu_cores=2, memory_gib=8, disk_gib=disk_gib)


async def audit_actions(world, action: str) -> list:
    async with world.container.uow() as uow:
        events, _ = await uow.audit.list(action=action, actor_id=None, limit=100, offset=0)
    return events


async def host_view(world, root, host_id: str):
    return await world.hosts.get(root, host_id)


async def go_silent(world, *host_ids: str, seconds: float = 16) -> None:
    world.clock.advance(seconds=seconds)  # 3 missed 5-second heartbeats and more
    assert sorted(await world.agents.mark_offline_hosts()) == sorted(host_ids)


# --- the domain rules ---------------------------------------------------------------------


@pytest.mark.parametrize("value", [
    "10.0.0.7", "203.0.113.5", "2001:db8::7", "gpu-7.example.com", "gpu7", "GPU-7.Example.COM", "",
])
def test_addresses_that_may_be_stored(value):
    assert check_address(value) == value


@pytest.mark.parametrize("value", [
    "10.0.0.7\nHost *", "10.0.0.7 -oProxyCommand=x", "ssh://10.0.0.7", "10.0.0.7:22", "host/path", "user@host",
    "[2001:db8::7]", "fe80::1%eth0", "-oProxyCommand", "a..b", "x" * 254, "gpü.example.com", "999.1.1.1", "10.0.0.7\t",
    "0.0.0.0", "::", "0.1.2.3", "169.254.169.254", "fe80::1", "224.0.0.1", "240.0.0.1",
])
def test_addresses_that_are_refused_whatever_the_allowance(value):
    for allow in (False, True):
        with pytest.raises(InvalidInput) as err:
            check_address(value, allow_loopback=allow)
        assert err.value.code == "invalid_address"


@pytest.mark.parametrize("value", ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1", "localhost", "a.localhost"])
def test_loopback_only_with_the_allowance(value):
    with pytest.raises(InvalidInput, match="loopback"):
        check_address(value, field="report.private_address")
    assert check_address(value, allow_loopback=True) == value


def test_take_inventory_keeps_out_what_another_host_owns():
    mine, theirs = Gpu(0, "GPU-mine", L4, 1), Gpu(1, "GPU-theirs", L4, 1)
    host = Host(id="h2", name="gpu-2")
    assert host.take_inventory([mine, theirs], {"GPU-theirs": "h1", "GPU-mine": "h2"}) is True
    assert host.gpus == [mine] and host.gpu_conflicts == {"GPU-theirs": "h1"}
    assert host.take_inventory([mine, theirs], {"GPU-theirs": "h1"}) is False  # unchanged: nothing new to raise
    (condition,) = host.conditions({"h1": "gpu-1"})
    assert condition.code == "gpu_uuid_conflict" and "gpu-1" in condition.message
    assert condition.details == {"uuid": "GPU-theirs", "owner_host_id": "h1", "owner_host_name": "gpu-1"}
    assert host.take_inventory([mine, theirs], {}) is True  # the owner let go: it is this host's now
    assert host.gpus == [mine, theirs] and host.gpu_conflicts == {} and host.conditions() == []


# --- a GPU UUID another host owns -----------------------------------------------------------


def stealing(agent, victim_gpus: list[Gpu]) -> None:
    """Make ``agent`` report its own GPUs plus ``victim_gpus`` (a copied or compromised agent)."""
    own = agent.probe.inventory()
    stolen = [replace(g, index=len(own) + i) for i, g in enumerate(victim_gpus)]
    agent.probe = type("StealingProbe", (), {"inventory": lambda self: own + stolen, "utilization": lambda self: {}})()


async def test_a_host_reporting_another_hosts_gpu_uuid_takes_nothing_from_it(world):
    root, alice = await world.user("root", admin=True), await world.user("alice")
    ws = await world.personal_ws(alice)
    one, _ = await memory_host_agent(world, "gpu-1")
    env = (await world.envs.create(alice, req(ws, "train"))).env.id
    await one.beat_once()
    view = await world.envs.get(alice, env)
    assert view.env.status is EnvStatus.RUNNING and view.env.host_id == one.host_id
    held = view.gpus[0]
    victim_gpus = (await host_view(world, root, one.host_id)).host.gpus

    two, _ = await memory_host_agent(world, "gpu-2")
    stealing(two, [held])
    await two.beat_once()
    await two.beat_once()  # twice: raised once

    # Host 1 keeps its inventory, its running environment keeps its GPU.
    after = await host_view(world, root, one.host_id)
    assert after.host.gpus == victim_gpus and after.allocated_gpus == {held.uuid} and after.conditions == []
    view = await world.envs.get(alice, env)
    assert [g.uuid for g in view.gpus] == [held.uuid] and view.env.status is EnvStatus.RUNNING
    # Host 2 schedules only its own two, and says why.
    thief = await host_view(world, root, two.host_id)
    assert held.uuid not in {g.uuid for g in thief.host.gpus} and len(thief.host.gpus) == 2
    (condition,) = thief.conditions
    assert condition.code == "gpu_uuid_conflict"
    assert condition.details == {"uuid": held.uuid, "owner_host_id": one.host_id, "owner_host_name": "gpu-1"}
    types, memory = await world.envs.gpu_types()
    assert [(t.model, t.total, t.free) for t in types] == [(L4, 4, 3)] and memory[L4] == 24 * 1024
    (event,) = await audit_actions(world, "host.gpu_conflict")
    assert event.target_id == two.host_id and event.details["conflicts"] == {held.uuid: one.host_id}

    # New GPU environments still land on host 1 (its other GPU), never on the stolen one.
    await world.hosts.set_status(root, two.host_id, HostStatus.CORDONED)
    second = await world.envs.create(alice, req(ws, "second"))
    assert second.env.status is EnvStatus.STARTING and second.env.host_id == one.host_id
    assert [g.uuid for g in second.gpus] == [g.uuid for g in victim_gpus if g.uuid != held.uuid]
    third = await world.envs.create(alice, req(ws, "third"))
    assert third.env.status is EnvStatus.QUEUED  # host 1 is full: the stolen UUID is not a second GPU
    await one.beat_once()
    assert (await world.envs.get(alice, env)).env.status is EnvStatus.RUNNING

    # A fresh host registering with it is refused it too.
    three, _ = await memory_host_agent(world, "gpu-3", gpus="1xNVIDIA L4 24GB")
    assert (await host_view(world, root, three.host_id)).host.gpu_conflicts == {}
    stealing(three, victim_gpus)
    await three.beat_once()
    assert set((await host_view(world, root, three.host_id)).host.gpu_conflicts) == {g.uuid for g in victim_gpus}
    assert (await host_view(world, root, one.host_id)).host.gpus == victim_gpus

    # Host 2 stops reporting it: the condition clears, and that is audited too.
    two.probe = FakeGpuProbe("2xNVIDIA L4 24GB", seed="gpu-2")
    await two.beat_once()
    assert (await host_view(world, root, two.host_id)).conditions == []
    assert len(await audit_actions(world, "host.gpu_conflict_cleared")) == 1


async def test_a_registration_reporting_a_taken_uuid_keeps_the_owner_and_raises_the_conflict(world):
    root = await world.user("root", admin=True)
    one = await world.add_host("gpu-1", "2xNVIDIA L4 24GB")
    _, join = await world.hosts.add(root, "gpu-2")
    copy = FakeHost(world, "", "", one.gpus)  # a cloned machine: same UUIDs
    host_id, _ = await world.agents.register(join, "gpu-2", copy.report())
    assert (await host_view(world, root, one.host_id)).host.gpus == one.gpus
    two = await host_view(world, root, host_id)
    assert two.host.gpus == [] and {c.details["uuid"] for c in two.conditions} == {g.uuid for g in one.gpus}
    assert len(await audit_actions(world, "host.gpu_conflict")) == 1


async def test_removing_the_owner_lets_the_reporting_host_take_the_gpu(world):
    root = await world.user("root", admin=True)
    one = await world.add_host("gpu-1", "1xNVIDIA L4 24GB")
    two = await world.add_host("gpu-2", "1xNVIDIA L4 24GB")
    two.gpus = two.gpus + [replace(one.gpus[0], index=1)]  # the GPU was physically moved; host 1 is dead
    await two.beat()
    assert len((await host_view(world, root, two.host_id)).host.gpus) == 1
    await world.hosts.remove(root, one.host_id, force=True)
    await two.beat()
    moved = await host_view(world, root, two.host_id)
    assert len(moved.host.gpus) == 2 and moved.conditions == []


# --- addresses --------------------------------------------------------------------------------


def report(address: str = "", private_address: str = "", gpus: list[Gpu] | None = None) -> HostReport:
    return HostReport(gpus=gpus or [], cpu_cores=8, memory_gib=32, disk_gib=100, runtime="memory", runtime_healthy=True,
                      address=address, private_address=private_address)


async def test_an_agent_reporting_a_bad_address_is_refused_and_nothing_is_stored(world):
    root = await world.user("root", admin=True)
    _, join = await world.hosts.add(root, "remote")
    # Registration refused: the join token is not burned.
    for bad in (report(private_address="127.0.0.1"), report(address="10.0.0.5\nHost *"), report(address="169.254.169.254")):
        with pytest.raises(InvalidInput) as err:
            await world.agents.register(join, "remote", bad)
        assert err.value.code == "invalid_address"
    host_id, token = await world.agents.register(join, "remote", report("203.0.113.5", "10.0.0.5"))
    before = (await host_view(world, root, host_id)).host

    world.clock.advance(seconds=5)
    for bad in (report("203.0.113.5", "localhost"), report("ssh://x", "10.0.0.5"), report("203.0.113.5", "0.0.0.0")):
        with pytest.raises(InvalidInput):
            await world.agents.heartbeat(token, replace(bad, gpus=[Gpu(0, "GPU-new", L4, 1)]))
    after = (await host_view(world, root, host_id)).host
    assert after == before  # no address, GPU or heartbeat time taken from a refused report
    assert (after.address, after.private_address) == ("203.0.113.5", "10.0.0.5")


async def test_loopback_is_allowed_only_where_an_admin_or_the_config_said_so(world, tmp_path):
    root = await world.user("root", admin=True)
    # The embedded host (created by the server itself) may: it is this machine.
    _, join = await world.hosts.add(None, "embedded")
    await world.agents.register(join, "embedded", report("127.0.0.1", "127.0.0.1"))
    # An admin's host with the allowance may.
    host, join = await world.hosts.add(root, "same-machine", allow_loopback=True)
    assert host.allow_loopback
    await world.agents.register(join, "same-machine", report("", "127.0.0.1"))
    assert (await host_view(world, root, host.id)).host.private_address == "127.0.0.1"
    # Without it, not even the admin's own address at creation.
    with pytest.raises(InvalidInput):
        await world.hosts.add(root, "remote", address="127.0.0.1")
    with pytest.raises(InvalidInput):
        await world.hosts.add(root, "remote", address="10.0.0.1 evil")
    _, join = await world.hosts.add(root, "remote", address="gpu.example.com")
    with pytest.raises(InvalidInput):
        await world.agents.register(join, "remote", report("", "127.0.0.1"))
    # REMOTEGPU_ALLOW_LOOPBACK_AGENTS (tests, development) lets every host.
    world.agents.allow_loopback = True
    try:
        await world.agents.register(join, "remote", report("", "127.0.0.1"))
    finally:
        world.agents.allow_loopback = False


# --- rotate and revoke ------------------------------------------------------------------------


async def test_rotating_kills_the_old_token_at_once_and_the_agent_comes_back_as_the_same_host(world):
    root, alice = await world.user("root", admin=True), await world.user("alice")
    ws = await world.personal_ws(alice)
    agent, runtime = await memory_host_agent(world, "gpu-1")
    env = (await world.envs.create(alice, req(ws, "keeps"))).env.id
    await agent.beat_once()
    host_id, old_token = agent.host_id, agent._credentials.load()[1]

    join = await world.hosts.rotate_token(root, host_id)
    assert join.startswith("rgj_")
    with pytest.raises(AgentTokenRejected):
        await agent.beat_once()
    with pytest.raises(Unauthenticated):
        await world.agents.heartbeat(old_token, report())
    host = (await host_view(world, root, host_id)).host
    assert join not in repr(host) and old_token not in repr(host)  # hashes only

    # `remotegpu agent --token NEW` with its saved (now dead) credentials: same host, same work.
    from remotegpu.application.fleet.agent import HostAgent

    restarted = HostAgent(agent.runtime, agent.probe, agent.link, agent.system, name="gpu-1", join_token=join,
                          credentials=agent._credentials)
    stop = asyncio.Event()
    beats = 0

    async def pause(_seconds: float) -> None:
        nonlocal beats
        beats += 1
        if beats >= 3:
            stop.set()

    restarted._sleep = pause
    await restarted.run_forever(stop)
    assert restarted.host_id == host_id and agent._credentials.load()[0] == host_id
    assert agent._credentials.load()[1] != old_token
    assert (await world.envs.get(alice, env)).env.status is EnvStatus.RUNNING
    assert (await runtime.inspect(env)).status == "running"
    assert [h.host.id for h in await world.hosts.list(root)] == [host_id]
    with pytest.raises(Unauthenticated):  # the join token was one-time
        await world.agents.register(join, "gpu-1", report())
    assert len(await audit_actions(world, "admin.host.token_rotated")) == 1


async def test_revoking_refuses_the_agent_and_any_unused_join_token(world):
    root, alice = await world.user("root", admin=True), await world.user("alice")
    host = await world.add_host("gpu-1")
    await world.hosts.revoke_token(root, host.host_id)
    with pytest.raises(Unauthenticated):
        await host.beat()
    await go_silent(world, host.host_id)  # a revoked host goes offline like a dead one
    assert (await host_view(world, root, host.host_id)).host.status is HostStatus.OFFLINE
    join = await world.hosts.rotate_token(root, host.host_id)
    await world.hosts.revoke_token(root, host.host_id)
    with pytest.raises(Unauthenticated):
        await world.agents.register(join, "gpu-1", host.report())
    for call in (world.hosts.rotate_token, world.hosts.revoke_token):
        with pytest.raises(NotFound):
            await call(root, "no-such-host")
        with pytest.raises(Exception) as err:
            await call(alice, host.host_id)
        assert err.value.code == "admin_required"
    assert len(await audit_actions(world, "admin.host.token_revoked")) == 2


# --- remove a host -----------------------------------------------------------------------------


async def test_removing_a_host_turns_its_environments_lost_and_deletable_and_frees_everything(world):
    root, alice = await world.user("root", admin=True), await world.user("alice")
    ws = await world.personal_ws(alice)
    host = await world.add_host("gpu-1", "4xNVIDIA L4 24GB")
    running = (await world.envs.create(alice, req(ws, "running", gpus=2, disk_gib=100))).env.id
    stopped = (await world.envs.create(alice, req(ws, "stopped", disk_gib=20))).env.id
    await host.beat_all_running()
    await world.envs.stop(alice, stopped)
    await host.beat_all_running()
    assert (await world.envs.get(alice, stopped)).env.status is EnvStatus.STOPPED
    async with world.container.uow() as uow:
        assert (await uow.workspaces.usage(ws)).storage_gib == 120

    with pytest.raises(Conflict) as err:
        await world.hosts.remove(root, host.host_id)  # online with environments: only with force
    assert err.value.code == "host_not_empty"
    lost = await world.hosts.remove(root, host.host_id, force=True)
    assert sorted(lost) == sorted([running, stopped])

    with pytest.raises(Unauthenticated):
        await host.beat()  # its token went with it
    assert await world.hosts.list(root) == []
    for env_id in (running, stopped):
        view = await world.envs.get(alice, env_id)
        assert view.env.status is EnvStatus.LOST and view.gpus == [] and view.ports == []
        assert "removed" in view.env.status_message
    async with world.container.uow() as uow:
        assert await uow.allocations.gpus() == []
    # Deletable at once: nobody is left to ask, and the storage quota is released.
    for env_id in (running, stopped):
        assert (await world.envs.delete(alice, env_id)).env.status is EnvStatus.DELETED
    async with world.container.uow() as uow:
        assert (await uow.workspaces.usage(ws)).storage_gib == 0
    (event,) = await audit_actions(world, "admin.host.removed")
    assert event.details["force"] is True and event.details["lost_environments"] == 2


async def test_a_dead_host_is_removed_without_force_and_an_empty_one_anytime(world):
    root, alice = await world.user("root", admin=True), await world.user("alice")
    ws = await world.personal_ws(alice)
    empty = await world.add_host("empty")
    await world.hosts.remove(root, empty.host_id)
    dead = await world.add_host("dead")
    env = (await world.envs.create(alice, req(ws, "on-dead"))).env.id
    await dead.beat_all_running()
    await go_silent(world, dead.host_id)
    assert (await world.envs.get(alice, env)).env.status is EnvStatus.LOST
    await world.hosts.remove(root, dead.host_id)
    assert (await world.envs.get(alice, env)).env.status is EnvStatus.LOST
    with pytest.raises(NotFound):
        await world.hosts.remove(root, dead.host_id)


async def test_a_delete_on_an_offline_host_completes_at_once(world):
    alice = await world.user("alice")
    ws = await world.personal_ws(alice)
    host = await world.add_host()
    env = (await world.envs.create(alice, req(ws, "x"))).env.id
    await host.beat_all_running()
    await go_silent(world, host.host_id)
    view = await world.envs.delete(alice, env)
    assert view.env.status is EnvStatus.DELETED
    async with world.container.uow() as uow:
        assert (await uow.workspaces.usage(ws)).storage_gib == 0
        assert await uow.allocations.gpus() == []


async def test_stops_and_deletes_stranded_on_a_silent_host_are_finished_after_the_bound(world):
    alice = await world.user("alice")
    ws = await world.personal_ws(alice)
    host = await world.add_host()
    doomed = (await world.envs.create(alice, req(ws, "doomed"))).env.id
    parked = (await world.envs.create(alice, req(ws, "parked"))).env.id
    await host.beat_all_running()
    await world.envs.delete(alice, doomed)  # the host is online: it is asked to remove it...
    await world.envs.stop(alice, parked)
    assert (await world.envs.get(alice, parked)).env.status is EnvStatus.STOPPING
    await go_silent(world, host.host_id)  # ...and dies before it answers
    assert await world.agents.finish_stranded() == []  # it may still come back
    world.clock.advance(seconds=world.agents.stranded_after_seconds)
    assert sorted(await world.agents.finish_stranded()) == sorted([doomed, parked])
    view = await world.envs.get(alice, parked)
    assert view.env.status is EnvStatus.STOPPED and "offline" in view.env.status_message
    with pytest.raises(NotFound):
        await world.envs.get(alice, doomed)
    async with world.container.uow() as uow:
        assert (await uow.workspaces.usage(ws)).storage_gib == 50  # the stopped one's disk only
    # The host comes back: the stopped environment is told to stay stopped.
    reply = await host.beat({parked: ("running", 0)})
    assert [(d.env_id, d.desired) for d in reply.desired] == [(parked, "stopped")]


async def test_a_stop_on_a_removed_host_ends_lost(world):
    root, alice = await world.user("root", admin=True), await world.user("alice")
    ws = await world.personal_ws(alice)
    host = await world.add_host()
    env = (await world.envs.create(alice, req(ws, "x"))).env.id
    await host.beat_all_running()
    await world.hosts.remove(root, host.host_id, force=True)
    assert (await world.envs.stop(alice, env)).env.status is EnvStatus.STOPPING
    assert await world.agents.finish_stranded() == [env]
    view = await world.envs.get(alice, env)
    assert view.env.status is EnvStatus.LOST
    with pytest.raises(Conflict):
        await world.envs.start(alice, env)  # nothing to start it on: delete is what is left
