"""Release paths let the queue move in their own commit; what the queue says while it waits."""

from __future__ import annotations

from remotegpu.application.environments.service import CreateRequest
from remotegpu.domain.environments.models import EnvStatus
from remotegpu.domain.workspaces.quota import Quota


def cpu_only(ws: str, name: str, cores: int = 1) -> CreateRequest:
    return CreateRequest(workspace_id=ws, name=name, gpu_count=0, cpu_cores=cores, memory_gib=1, disk_gib=1)


async def status(world, user, env_id: str) -> tuple[EnvStatus, str]:
    view = await world.envs.get(user, env_id)
    return view.env.status, view.env.status_message


async def test_a_host_out_of_ports_keeps_one_waiting_without_failing_the_use_case(world):
    fake = await world.add_host()
    async with world.container.storage_uow() as uow:  # room for two environments' ports only
        host = await uow.hosts.get(fake.host_id)
        host.port_range = (20000, 20003)
        await uow.hosts.update(host)
        await uow.commit()
    alice = await world.user("alice")
    ws = await world.personal_ws(alice)
    first = (await world.envs.create(alice, cpu_only(ws, "a"))).env.id
    await world.envs.create(alice, cpu_only(ws, "b"))
    third = await world.envs.create(alice, cpu_only(ws, "c"))  # CPU to spare, no ports: waits, create still answers
    assert third.env.status is EnvStatus.QUEUED and "no free ports" in third.env.status_message
    await world.envs.delete(alice, first)
    assert (await status(world, alice, third.env.id))[0] is EnvStatus.STARTING


async def test_raising_a_quota_starts_what_waited_for_it(world):
    await world.add_host()  # 64 cores
    admin = await world.user("root", admin=True)
    alice, bob = await world.user("alice"), await world.user("bob")
    ws, bob_ws = await world.personal_ws(alice), await world.personal_ws(bob)
    await world.container.workspace_service().set_quota(admin, bob_ws, Quota(max_cpu_cores=64))
    big = (await world.envs.create(bob, cpu_only(bob_ws, "all", cores=64))).env.id
    world.clock.advance(seconds=1)
    a = (await world.envs.create(alice, cpu_only(ws, "a", cores=2))).env.id
    world.clock.advance(seconds=1)  # b queues after a
    b = (await world.envs.create(alice, cpu_only(ws, "b", cores=2))).env.id
    assert "waiting for 2 vCPU; most free on such a host: 0 vCPU" in (await status(world, alice, b))[1]
    await world.container.workspace_service().set_quota(admin, ws, Quota(max_cpu_cores=2))
    await world.envs.delete(bob, big)
    assert (await status(world, alice, a))[0] is EnvStatus.STARTING, await status(world, alice, a)
    waiting, message = await status(world, alice, b)
    assert waiting is EnvStatus.QUEUED and "quota" in message
    await world.container.workspace_service().set_quota(admin, ws, Quota(max_cpu_cores=4))  # the raise moves the queue
    assert (await status(world, alice, b))[0] is EnvStatus.STARTING
