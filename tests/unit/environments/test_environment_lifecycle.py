"""Environment use cases end to end on in-memory adapters (no HTTP, no containers)."""

from __future__ import annotations

import asyncio

import pytest

from remotegpu.application.environments.service import CreateRequest
from remotegpu.domain.environments.models import EnvStatus
from remotegpu.domain.shared.errors import Conflict, InvalidInput, NotFound, PermissionDenied, QuotaExceeded
from remotegpu.domain.workspaces.models import Role
from remotegpu.domain.workspaces.quota import Quota
from tests.support.workspaces import join


def req(ws: str, name: str = "e", gpus: int = 1, **kw) -> CreateRequest:
    return CreateRequest(workspace_id=ws, name=name, gpu_count=gpus, cpu_cores=2, memory_gib=8, **kw)


async def free_gpus(world) -> int:
    return sum(t.free for t in (await world.envs.gpu_types())[0])


async def test_create_places_on_a_host_and_runs_when_the_agent_reports_it(world):
    host = await world.add_host()
    alice = await world.user("alice")
    view = await world.envs.create(alice, req(await world.personal_ws(alice), gpus=2))
    assert view.env.status is EnvStatus.STARTING and view.env.host_id == host.host_id
    assert len(view.gpus) == 2 and {p.purpose for p in view.ports} == {"ssh", "jupyter"}
    assert await free_gpus(world) == 2
    reply = await host.beat()
    spec = next(d for d in reply.desired if d.env_id == view.env.id).spec
    assert sorted(spec.gpu_uuids) == sorted(g.uuid for g in view.gpus) and spec.fake_gpus
    assert spec.env["REMOTEGPU_JUPYTER_BASE_URL"] == "/"  # JupyterLab has a host of its own
    await host.beat({view.env.id: ("running", 0)})
    assert (await world.envs.get(alice, view.env.id)).env.status is EnvStatus.RUNNING


async def test_stop_releases_gpus_but_keeps_ports_and_the_host_for_the_disk(world):
    host = await world.add_host()
    alice = await world.user("alice")
    created = await world.envs.create(alice, req(await world.personal_ws(alice), gpus=2))
    env_id, ports, gpus = created.env.id, created.ports, created.gpus
    await host.beat_all_running()
    view = await world.envs.stop(alice, env_id)
    # Ports stay for the environment's life (users keep their ~/.ssh/config); GPUs go.
    assert view.env.status is EnvStatus.STOPPING and view.ports == ports and view.gpus == []
    assert await free_gpus(world) == 4
    reply = await host.beat({env_id: ("running", 0)})
    assert [(d.env_id, d.desired) for d in reply.desired] == [(env_id, "stopped")]
    await host.beat({env_id: ("stopped", 0)})
    view = await world.envs.get(alice, env_id)
    assert view.env.status is EnvStatus.STOPPED and view.env.host_id == host.host_id and view.ports == ports
    view = await world.envs.start(alice, env_id)
    # Same host, same ports, and the GPUs it had (free again): its container is reused as it was.
    assert view.env.status is EnvStatus.STARTING and view.env.host_id == host.host_id
    assert view.ports == ports and view.gpus == gpus


async def test_start_takes_other_gpus_when_its_own_are_taken_and_keeps_its_ports(world):
    host = await world.add_host()
    alice = await world.user("alice")
    ws = await world.personal_ws(alice)
    first = await world.envs.create(alice, req(ws, name="first", gpus=2))
    await host.beat_all_running()
    await world.envs.stop(alice, first.env.id)
    await host.beat({first.env.id: ("stopped", 0)})
    # Another environment takes exactly the GPUs the first one had (the scheduler packs
    # from the lowest index) plus the rest.
    other = await world.envs.create(alice, req(ws, name="other", gpus=3))
    assert {g.uuid for g in first.gpus} <= {g.uuid for g in other.gpus}
    await world.envs.stop(alice, other.env.id)  # frees 3 GPUs, two of them first's
    second = await world.envs.create(alice, req(ws, name="second", gpus=1))
    taken = {g.uuid for g in second.gpus}
    view = await world.envs.start(alice, first.env.id)
    assert view.env.status is EnvStatus.STARTING and view.ports == first.ports and len(view.gpus) == 2
    assert taken & {g.uuid for g in first.gpus}  # one of its own GPUs is busy now
    assert not taken & {g.uuid for g in view.gpus}
    # No port on the host is held twice, stopped environments included.
    held = [p.port for v in (view, await world.envs.get(alice, other.env.id), second) for p in v.ports]
    assert len(held) == len(set(held)) == 6


async def test_delete_releases_the_ports_of_a_stopped_environment(world):
    host = await world.add_host()
    alice = await world.user("alice")
    env_id = (await world.envs.create(alice, req(await world.personal_ws(alice), gpus=1))).env.id
    await host.beat_all_running()
    await world.envs.stop(alice, env_id)
    await host.beat({env_id: ("stopped", 0)})
    await world.envs.delete(alice, env_id)
    async with world.container.uow() as uow:
        assert await uow.allocations.ports_of(env_id) == []


async def test_a_container_its_runtime_cannot_place_yet_shows_why_and_is_still_cleaned_up(world):
    """A Kubernetes Pod still Pending: reported ``missing`` with ``pending: …`` (the cluster
    scheduler's reason). The environment stays starting with that reason; stopping and
    deleting wait until the agent reports it really gone."""
    from remotegpu.application.fleet.agent_protocol import ObservedEnvironment

    host = await world.add_host()
    alice = await world.user("alice")
    env_id = (await world.envs.create(alice, req(await world.personal_ws(alice), gpus=1))).env.id
    reason = "pending: unschedulable: 0/2 nodes are available: 2 Insufficient nvidia.com/gpu."

    async def beat_pending():
        report = host.report()
        report.observed.append(ObservedEnvironment(env_id, "missing", 0, reason))
        return await world.agents.heartbeat(host.token, report)

    await beat_pending()
    view = await world.envs.get(alice, env_id)
    assert view.env.status is EnvStatus.STARTING and view.env.status_message == reason
    await world.envs.stop(alice, env_id)
    await beat_pending()
    assert (await world.envs.get(alice, env_id)).env.status is EnvStatus.STOPPING  # the Pod is still there
    await host.beat({})
    assert (await world.envs.get(alice, env_id)).env.status is EnvStatus.STOPPED
    await world.envs.start(alice, env_id)
    await beat_pending()
    await world.envs.delete(alice, env_id)
    await beat_pending()
    assert (await world.envs.get(alice, env_id)).env.status is EnvStatus.DELETING
    await host.beat({})
    async with world.container.uow() as uow:
        assert (await uow.environments.get(env_id)).status is EnvStatus.DELETED


async def test_start_without_gpu_takes_no_gpu(world):
    host = await world.add_host()
    alice = await world.user("alice")
    env_id = (await world.envs.create(alice, req(await world.personal_ws(alice), gpus=2))).env.id
    await host.beat_all_running()
    await world.envs.stop(alice, env_id)
    await host.beat({env_id: ("stopped", 0)})
    view = await world.envs.start(alice, env_id, gpu=False)
    assert view.env.status is EnvStatus.STARTING and view.gpus == [] and not view.env.with_gpu
    assert await free_gpus(world) == 4


async def test_twenty_concurrent_creates_on_four_gpus_start_four_and_queue_the_rest_in_order(world):
    host = await world.add_host()
    alice, root = await world.user("alice"), await world.user("root", admin=True)
    ws = await world.personal_ws(alice)
    await world.container.workspace_service().set_quota(root, ws, Quota())  # unlimited: this test is about the queue
    views = await asyncio.gather(*(world.envs.create(alice, req(ws, name=f"e{i}")) for i in range(20)))
    starting = [v for v in views if v.env.status is EnvStatus.STARTING]
    queued = [v for v in views if v.env.status is EnvStatus.QUEUED]
    assert len(starting) == 4 and len(queued) == 16
    held = [g.uuid for v in starting for g in v.gpus]
    assert len(held) == len(set(held)) == 4
    listed, _ = await world.envs.list(alice, workspace_id=ws, statuses=[EnvStatus.QUEUED], limit=50, offset=0)
    by_position = sorted(listed, key=lambda v: v.queue_position)
    assert [v.queue_position for v in by_position] == list(range(1, 17))
    # Deleting two running ones starts the first two in the queue, in order.
    for v in starting[:2]:
        await world.envs.delete(alice, v.env.id)
    now_starting = {v.env.id for v, in [(await world.envs.get(alice, q.env.id),) for q in by_position] if v.env.status is EnvStatus.STARTING}
    assert now_starting == {by_position[0].env.id, by_position[1].env.id}


async def test_quota_is_enforced_also_under_concurrent_creates(world):
    await world.add_host(spec="8xNVIDIA A100-SXM4-80GB")
    root, alice = await world.user("root", admin=True), await world.user("alice")
    ws = await world.personal_ws(alice)
    await world.container.workspace_service().set_quota(root, ws, Quota(max_gpus=3))
    results = await asyncio.gather(*(world.envs.create(alice, req(ws, name=f"e{i}")) for i in range(6)), return_exceptions=True)
    ok = [r for r in results if not isinstance(r, Exception)]
    assert len(ok) == 3 and all(isinstance(r, QuotaExceeded) for r in results if isinstance(r, Exception))
    assert (await world.container.workspace_service().get_quota(alice, ws)).usage.gpus == 3


async def test_disks_count_against_the_storage_quota_until_deleted(world):
    host = await world.add_host()
    root, alice = await world.user("root", admin=True), await world.user("alice")
    ws = await world.personal_ws(alice)
    workspaces = world.container.workspace_service()
    await workspaces.set_quota(root, ws, Quota(max_storage_gib=100))
    first = await world.envs.create(alice, req(ws, name="first", disk_gib=60))
    assert first.env.disk_gib == 60
    assert (await workspaces.get_quota(alice, ws)).usage.storage_gib == 60
    with pytest.raises(QuotaExceeded) as refused:
        await world.envs.create(alice, req(ws, name="second", disk_gib=50))
    assert [v["resource"] for v in refused.value.details["violations"]] == ["storage_gib"]
    assert refused.value.details["violations"][0] == {"resource": "storage_gib", "limit": 100, "used": 60, "requested": 50}
    # A stopped environment keeps its disk: it still counts, and starting it asks for no more.
    await host.beat_all_running()
    await world.envs.stop(alice, first.env.id)
    await host.beat({first.env.id: ("stopped", 0)})
    assert (await workspaces.get_quota(alice, ws)).usage.storage_gib == 60
    with pytest.raises(QuotaExceeded):
        await world.envs.create(alice, req(ws, name="second", disk_gib=50))
    await world.envs.create(alice, req(ws, name="small", gpus=0, disk_gib=40))  # exactly at the limit
    assert (await world.envs.start(alice, first.env.id)).env.status is EnvStatus.STARTING
    assert (await workspaces.get_quota(alice, ws)).usage.storage_gib == 100
    # Deleting frees it once the agent reports the volume gone (until then the disk exists).
    assert (await world.envs.delete(alice, first.env.id)).env.status is EnvStatus.DELETING
    assert (await workspaces.get_quota(alice, ws)).usage.storage_gib == 100
    await host.beat({})
    with pytest.raises(NotFound):
        await world.envs.get(alice, first.env.id)
    assert (await workspaces.get_quota(alice, ws)).usage.storage_gib == 40
    assert (await world.envs.create(alice, req(ws, name="second", disk_gib=50))).env.disk_gib == 50


async def test_disk_size_is_validated_and_reaches_the_agent(world):
    host = await world.add_host()
    alice = await world.user("alice")
    ws = await world.personal_ws(alice)
    for bad in (0, 4097):
        with pytest.raises(InvalidInput):
            await world.envs.create(alice, req(ws, disk_gib=bad))
    view = await world.envs.create(alice, req(ws))
    assert view.env.disk_gib == 50  # the default
    reply = await host.beat()
    assert next(d for d in reply.desired if d.env_id == view.env.id).spec.disk_gib == 50


async def test_the_agent_learns_the_workspace_its_environment_is_networked_by(world):
    host = await world.add_host()
    alice = await world.user("alice")
    ws = await world.personal_ws(alice)
    view = await world.envs.create(alice, req(ws))
    reply = await host.beat()
    assert next(d for d in reply.desired if d.env_id == view.env.id).spec.workspace_id == view.env.workspace_id == ws


async def test_a_failed_start_releases_resources_and_lets_the_queue_move(world):
    host = await world.add_host(spec="1xNVIDIA A100-SXM4-80GB")
    alice = await world.user("alice")
    ws = await world.personal_ws(alice)
    first = (await world.envs.create(alice, req(ws, name="first"))).env.id
    second = (await world.envs.create(alice, req(ws, name="second"))).env.id
    assert (await world.envs.get(alice, second)).env.status is EnvStatus.QUEUED
    await host.beat({first: ("failed", 0)})
    first_view = await world.envs.get(alice, first)
    assert first_view.env.status is EnvStatus.FAILED and "failed" in first_view.env.status_message
    assert (await world.envs.get(alice, second)).env.status is EnvStatus.STARTING


async def test_a_silent_host_goes_offline_its_environments_lost_and_back(world):
    host = await world.add_host()
    alice = await world.user("alice")
    env_id = (await world.envs.create(alice, req(await world.personal_ws(alice)))).env.id
    await host.beat_all_running()
    world.clock.advance(seconds=16)
    assert await world.agents.mark_offline_hosts() == [host.host_id]
    assert (await world.envs.get(alice, env_id)).env.status is EnvStatus.LOST
    await host.beat({env_id: ("running", 0)})
    assert (await world.envs.get(alice, env_id)).env.status is EnvStatus.RUNNING
    events, _ = await world.envs.events(alice, env_id, limit=50, offset=0)
    assert [e.to_status for e in events][-2:] == [EnvStatus.LOST, EnvStatus.RUNNING]


async def test_stop_after_minutes_stops_and_says_why(world):
    host = await world.add_host()
    alice = await world.user("alice")
    env_id = (await world.envs.create(alice, req(await world.personal_ws(alice), stop_after_minutes=30))).env.id
    await host.beat_all_running()
    assert await world.container.autostop().sweep() == []
    world.clock.advance(minutes=31)
    await host.beat_all_running()
    assert await world.container.autostop().sweep() == [env_id]
    view = await world.envs.get(alice, env_id)
    assert view.env.status is EnvStatus.STOPPING and "30 minutes" in view.env.status_message


async def test_idle_gpus_stop_the_environment_unless_someone_uses_it(world):
    host = await world.add_host()
    alice = await world.user("alice")
    env_id = (await world.envs.create(alice, req(await world.personal_ws(alice), idle_stop_minutes=10))).env.id
    await host.beat_all_running()
    gpu = (await world.envs.get(alice, env_id)).gpus[0].uuid
    stop = world.container.autostop()

    async def beat(util):
        report = host.report({env_id: ("running", 0)})
        report.utilization.update({gpu: util})
        await world.agents.heartbeat(host.token, report)

    await beat(1)
    await stop.sweep()
    world.clock.advance(minutes=6)
    await stop.record_activity(env_id)  # someone used Jupyter: the idle clock restarts
    await beat(1)
    world.clock.advance(minutes=6)
    assert await stop.sweep() == []
    await beat(1)
    world.clock.advance(minutes=11)
    assert await stop.sweep() == [env_id]
    assert "idle" in (await world.envs.get(alice, env_id)).env.status_message


async def test_roles_viewers_see_members_operate_their_own_admins_all(world):
    host = await world.add_host()
    owner, viewer, member, stranger = [await world.user(n) for n in ("owner", "viewer", "member", "stranger")]
    wss = world.container.workspace_service()
    ws = (await wss.create(owner, "team")).workspace.id
    await join(world.container, owner, ws, viewer, Role.VIEWER)
    await join(world.container, owner, ws, member, Role.MEMBER)
    owners_env = (await world.envs.create(owner, req(ws, name="o"))).env.id
    assert (await world.envs.get(viewer, owners_env)).env.id == owners_env
    with pytest.raises(PermissionDenied):
        await world.envs.create(viewer, req(ws))
    with pytest.raises(PermissionDenied):
        await world.envs.stop(viewer, owners_env)
    with pytest.raises(PermissionDenied):
        await world.envs.stop(member, owners_env)
    with pytest.raises(NotFound):
        await world.envs.get(stranger, owners_env)
    members_env = (await world.envs.create(member, req(ws, name="m"))).env.id
    await world.envs.stop(member, members_env)
    await world.envs.stop(owner, owners_env)  # owner = workspace admin and more
    del host


async def test_invalid_transitions_are_conflicts(world):
    await world.add_host()
    alice = await world.user("alice")
    env_id = (await world.envs.create(alice, req(await world.personal_ws(alice)))).env.id
    with pytest.raises(Conflict):
        await world.envs.start(alice, env_id)
    with pytest.raises(Conflict):
        await world.envs.restart(alice, env_id)  # not running yet


async def test_deleting_a_never_placed_environment_is_immediate(world):
    alice = await world.user("alice")
    env_id = (await world.envs.create(alice, req(await world.personal_ws(alice)))).env.id  # no hosts: queued
    view = await world.envs.delete(alice, env_id)
    assert view.env.status is EnvStatus.DELETED
    with pytest.raises(NotFound):
        await world.envs.get(alice, env_id)


async def test_draining_a_host_stops_its_environments(world):
    host = await world.add_host()
    root, alice = await world.user("root", admin=True), await world.user("alice")
    env_id = (await world.envs.create(alice, req(await world.personal_ws(alice)))).env.id
    await host.beat_all_running()
    from remotegpu.domain.fleet.models import HostStatus

    await world.hosts.set_status(root, host.host_id, HostStatus.DRAINING)
    view = await world.envs.get(alice, env_id)
    assert view.env.status is EnvStatus.STOPPING and "drained" in view.env.status_message
    # A drained host takes nothing new.
    assert (await world.envs.create(alice, req(await world.personal_ws(alice), name="new"))).env.status is EnvStatus.QUEUED
