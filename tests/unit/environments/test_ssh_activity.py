"""SSH sessions feed the idle policy: a real HostAgent on the in-memory runtime reports
them in its heartbeats, the server counts them as use (hand-moved clock)."""

from __future__ import annotations

from remotegpu.application.environments.service import CreateRequest
from remotegpu.domain.environments.models import EnvStatus
from tests.support.agent_fakes import memory_host_agent


async def _agent(world):
    return await memory_host_agent(world, "gpu-ssh", cpu_cores=32, memory_gib=128)


async def _idle_stopping_env(world, alice) -> str:
    ws = await world.personal_ws(alice)
    return (await world.envs.create(alice, CreateRequest(
        workspace_id=ws, name="e", gpu_count=1, cpu_cores=2, memory_gib=8, idle_stop_minutes=10,
    ))).env.id


async def test_an_ssh_session_keeps_an_idle_environment_running_until_it_ends(world):
    agent, runtime = await _agent(world)
    alice = await world.user("alice")
    env_id = await _idle_stopping_env(world, alice)
    await agent.beat_once()  # starts it, and reports it running
    assert (await world.envs.get(alice, env_id)).env.status is EnvStatus.RUNNING
    autostop = world.container.autostop()

    async def minutes_pass(minutes: float) -> list[str]:
        world.clock.advance(minutes=minutes)
        await agent.beat_once()
        return await autostop.sweep()

    # GPUs idle (the fake probe reads 0%), but someone is logged in over SSH.
    runtime.set_ssh_sessions(env_id, 1)
    assert await minutes_pass(0) == []
    for _ in range(5):
        assert await minutes_pass(6) == []  # 30 minutes, three times the idle limit
    env = (await world.envs.get(alice, env_id)).env
    assert env.status is EnvStatus.RUNNING and env.last_activity_at == world.clock.now()

    runtime.set_ssh_sessions(env_id, 0)  # the user logs out
    assert await minutes_pass(5) == []
    assert await minutes_pass(4) == []  # 9 minutes since the last session was seen
    assert await minutes_pass(2) == [env_id]
    view = await world.envs.get(alice, env_id)
    assert view.env.status is EnvStatus.STOPPING and "idle" in view.env.status_message


async def test_ssh_sessions_of_a_stopped_environment_are_not_activity(world):
    agent, runtime = await _agent(world)
    alice = await world.user("alice")
    env_id = await _idle_stopping_env(world, alice)
    await agent.beat_once()
    report = await agent.report()
    assert [(o.env_id, o.ssh_sessions) for o in report.observed] == [(env_id, 0)]
    runtime.set_ssh_sessions(env_id, 2)
    assert [o.ssh_sessions for o in (await agent.report()).observed] == [2]
    await world.envs.stop(alice, env_id)
    await agent.beat_once()
    before = (await world.envs.get(alice, env_id)).env
    assert before.status is EnvStatus.STOPPED
    world.clock.advance(minutes=1)
    await agent.beat_once()
    assert (await world.envs.get(alice, env_id)).env.last_activity_at == before.last_activity_at
