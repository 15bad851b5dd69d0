"""The server's side of quarantine: what an agent holds without being asked is shown on
the host (and audited once), and only what the server marked deleted is ever removed."""

from __future__ import annotations

from dataclasses import replace

from remotegpu.application.fleet.agent_protocol import QuarantinedEnvironment
from tests.unit.environments.test_environment_lifecycle import req


async def beat_with(host, quarantined, observed=None):
    report = replace(host.report(observed), quarantined=quarantined)
    return await host.world.agents.heartbeat(host.token, report)


async def test_quarantined_environments_are_listed_on_the_host_and_audited_once(world):
    host = await world.add_host()
    admin = await world.user("root", admin=True)
    reply = await beat_with(host, [QuarantinedEnvironment("lost-1", "host-before")])
    assert reply.desired == []  # nothing asked of it: not ours to decide
    await beat_with(host, [QuarantinedEnvironment("lost-1", "host-before")])

    (entry,) = (await world.hosts.get(admin, host.host_id)).host.quarantined
    assert (entry.env_id, entry.host_id) == ("lost-1", "host-before") and entry.since is not None
    events, total = await world.container.admin_service().list_audit(admin, action="host.quarantined", actor_id=None,
                                                                      limit=10, offset=0)
    assert total == 1 and events[0].target_id == host.host_id and events[0].details["env_id"] == "lost-1"

    await beat_with(host, [])  # an operator removed it
    assert (await world.hosts.get(admin, host.host_id)).host.quarantined == []


async def test_an_unhealthy_runtime_changes_nothing(world):
    host = await world.add_host()
    admin = await world.user("root", admin=True)
    await beat_with(host, [QuarantinedEnvironment("lost-1")])
    report = replace(host.report(), runtime_healthy=False, quarantined=[])
    await world.agents.heartbeat(host.token, report)
    assert [q.env_id for q in (await world.hosts.get(admin, host.host_id)).host.quarantined] == ["lost-1"]


async def test_a_quarantined_environment_the_server_deleted_is_removed_and_no_other(world):
    """The agent registered again (new host id); the user deleted the environment that
    was on the old host: its container in quarantine may go. A live one may not."""
    old = await world.add_host("gpu-old")
    alice = await world.user("alice")
    ws = await world.personal_ws(alice)
    gone = (await world.envs.create(alice, req(ws, name="gone", gpus=1))).env.id
    alive = (await world.envs.create(alice, req(ws, name="alive", gpus=1))).env.id
    await old.beat_all_running()
    await world.envs.delete(alice, gone)  # deleting; the old host never reports again
    new = await world.add_host("gpu-new")

    reply = await beat_with(new, [QuarantinedEnvironment(gone, old.host_id), QuarantinedEnvironment(alive, old.host_id),
                                  QuarantinedEnvironment("unknown", "")])

    assert [(d.env_id, d.desired) for d in reply.desired] == [(gone, "deleted")]
