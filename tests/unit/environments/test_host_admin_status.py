"""An admin's cordon / drain / uncordon outlives the host going offline and coming back.

``Host.status`` is the visible status (offline while the agent is silent), while
``Host.admin_status`` keeps the admin's choice, which the host returns to when its agent
reports again. Use cases on in-memory adapters (the ``world`` fixture, conftest.py).
"""

from __future__ import annotations

import pytest

from remotegpu.application.environments.service import CreateRequest
from remotegpu.domain.environments.models import EnvStatus
from remotegpu.domain.fleet.models import Host, HostStatus, parse_fake_gpus
from remotegpu.domain.shared.errors import InvalidInput
from tests.unit.environments.conftest import FakeHost


def req(ws: str, name: str) -> CreateRequest:
    return CreateRequest(workspace_id=ws, name=name, gpu_count=1, cpu_cores=2, memory_gib=8)


async def statuses(world, root, host_id: str) -> tuple[HostStatus, HostStatus]:
    host = (await world.hosts.get(root, host_id)).host
    return host.status, host.admin_status


async def go_silent(world, host) -> None:
    world.clock.advance(seconds=16)  # 3 missed 5-second heartbeats
    assert await world.agents.mark_offline_hosts() == [host.host_id]


# --- the domain rule --------------------------------------------------------------------


def test_offline_keeps_the_admins_choice_and_coming_back_restores_it():
    host = Host(id="h", name="gpu-1")
    host.set_admin_status(HostStatus.CORDONED)
    assert (host.status, host.admin_status) == (HostStatus.CORDONED, HostStatus.CORDONED)
    host.mark_offline()
    assert (host.status, host.admin_status) == (HostStatus.OFFLINE, HostStatus.CORDONED)
    host.set_admin_status(HostStatus.DRAINING)  # recorded; still offline
    assert (host.status, host.admin_status) == (HostStatus.OFFLINE, HostStatus.DRAINING)
    assert host.mark_online() is True
    assert (host.status, host.admin_status) == (HostStatus.DRAINING, HostStatus.DRAINING)
    assert host.mark_online() is False  # already online: nothing changes
    with pytest.raises(InvalidInput):
        host.set_admin_status(HostStatus.OFFLINE)  # liveness, not a choice
    with pytest.raises(InvalidInput):
        Host(id="h", name="gpu-1", admin_status=HostStatus.OFFLINE)


# --- through the use cases --------------------------------------------------------------


async def test_a_cordoned_host_that_reboots_comes_back_cordoned_and_takes_nothing_new(world):
    host = await world.add_host()
    root, alice = await world.user("root", admin=True), await world.user("alice")
    ws = await world.personal_ws(alice)
    running = (await world.envs.create(alice, req(ws, "running"))).env.id
    await host.beat_all_running()
    await world.hosts.set_status(root, host.host_id, HostStatus.CORDONED)

    await go_silent(world, host)
    assert await statuses(world, root, host.host_id) == (HostStatus.OFFLINE, HostStatus.CORDONED)
    assert (await world.envs.get(alice, running)).env.status is EnvStatus.LOST
    waiting = (await world.envs.create(alice, req(ws, "waiting"))).env.id
    assert (await world.envs.get(alice, waiting)).env.status is EnvStatus.QUEUED

    # The agent is back (a reboot): its running work resumes, but the host stays cordoned.
    reply = await host.beat({running: ("running", 0)})
    assert await statuses(world, root, host.host_id) == (HostStatus.CORDONED, HostStatus.CORDONED)
    assert [d.env_id for d in reply.desired] == [running]
    assert (await world.envs.get(alice, running)).env.status is EnvStatus.RUNNING
    view = await world.envs.get(alice, waiting)
    assert view.env.status is EnvStatus.QUEUED and view.env.host_id is None and view.gpus == []
    await host.beat_all_running()
    assert (await world.envs.get(alice, waiting)).env.status is EnvStatus.QUEUED

    # Only the admin's uncordon lets the queue onto it.
    await world.hosts.set_status(root, host.host_id, HostStatus.READY)
    assert await statuses(world, root, host.host_id) == (HostStatus.READY, HostStatus.READY)
    view = await world.envs.get(alice, waiting)
    assert view.env.status is EnvStatus.STARTING and view.env.host_id == host.host_id


async def test_uncordoning_an_offline_host_is_accepted_and_it_is_ready_when_it_reports(world):
    host = await world.add_host()
    root, alice = await world.user("root", admin=True), await world.user("alice")
    await world.hosts.set_status(root, host.host_id, HostStatus.CORDONED)
    waiting = (await world.envs.create(alice, req(await world.personal_ws(alice), "waiting"))).env.id
    await go_silent(world, host)

    returned = await world.hosts.set_status(root, host.host_id, HostStatus.READY)
    assert (returned.status, returned.admin_status) == (HostStatus.OFFLINE, HostStatus.READY)
    assert await statuses(world, root, host.host_id) == (HostStatus.OFFLINE, HostStatus.READY)
    assert (await world.envs.get(alice, waiting)).env.status is EnvStatus.QUEUED  # an offline host takes nothing

    await host.beat()
    assert await statuses(world, root, host.host_id) == (HostStatus.READY, HostStatus.READY)
    view = await world.envs.get(alice, waiting)
    assert view.env.status is EnvStatus.STARTING and view.env.host_id == host.host_id


async def test_cordoning_an_offline_host_keeps_it_offline_until_it_reports(world):
    host = await world.add_host()
    root = await world.user("root", admin=True)
    await go_silent(world, host)
    await world.hosts.set_status(root, host.host_id, HostStatus.CORDONED)
    assert await statuses(world, root, host.host_id) == (HostStatus.OFFLINE, HostStatus.CORDONED)
    world.clock.advance(seconds=60)
    assert await world.agents.mark_offline_hosts() == []  # already offline
    await host.beat()
    assert await statuses(world, root, host.host_id) == (HostStatus.CORDONED, HostStatus.CORDONED)


async def test_draining_an_offline_host_stops_its_environments_and_it_comes_back_draining(world):
    host = await world.add_host()
    root, alice = await world.user("root", admin=True), await world.user("alice")
    ws = await world.personal_ws(alice)
    env_id = (await world.envs.create(alice, req(ws, "lost"))).env.id
    await host.beat_all_running()
    await go_silent(world, host)
    assert (await world.envs.get(alice, env_id)).env.status is EnvStatus.LOST

    await world.hosts.set_status(root, host.host_id, HostStatus.DRAINING)
    assert await statuses(world, root, host.host_id) == (HostStatus.OFFLINE, HostStatus.DRAINING)
    view = await world.envs.get(alice, env_id)
    assert view.env.status is EnvStatus.STOPPING and "drained" in view.env.status_message

    reply = await host.beat({env_id: ("running", 0)})
    assert await statuses(world, root, host.host_id) == (HostStatus.DRAINING, HostStatus.DRAINING)
    assert [(d.env_id, d.desired) for d in reply.desired] == [(env_id, "stopped")]
    await host.beat({env_id: ("stopped", 0)})
    assert (await world.envs.get(alice, env_id)).env.status is EnvStatus.STOPPED
    assert (await world.envs.create(alice, req(ws, "new"))).env.status is EnvStatus.QUEUED


async def test_a_host_cordoned_before_its_agent_first_registers_joins_cordoned(world):
    root, alice = await world.user("root", admin=True), await world.user("alice")
    waiting = (await world.envs.create(alice, req(await world.personal_ws(alice), "waiting"))).env.id  # no hosts: queued
    host, join = await world.hosts.add(root, "gpu-9")
    assert (host.status, host.admin_status) == (HostStatus.OFFLINE, HostStatus.READY)
    await world.hosts.set_status(root, host.id, HostStatus.CORDONED)
    fake = FakeHost(world, host.id, "", parse_fake_gpus("2xNVIDIA A100-SXM4-80GB", seed="gpu-9"))
    await world.agents.register(join, "gpu-9", fake.report())
    assert await statuses(world, root, host.id) == (HostStatus.CORDONED, HostStatus.CORDONED)
    assert (await world.envs.get(alice, waiting)).env.status is EnvStatus.QUEUED
