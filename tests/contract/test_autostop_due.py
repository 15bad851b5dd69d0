"""The auto-stop sweep reads only what can be due (``autostop_due_at``, migration 0038),
on memory, SQLite and PostgreSQL alike, and still stops what it must.

Due: a running environment past its time limit (started_at + stop_after_minutes), and a
running one with an idle policy (idleness is seen in each sweep's GPU readings). Never:
one without a policy, or one not running. A restart moves the time limit's due time.
The offline sweep likewise loads only hosts silent since its cutoff.
"""

from __future__ import annotations

from dataclasses import replace
from remotegpu.application.environments.autostop import AutoStop
from remotegpu.domain.environments.models import EnvStatus, GpuAllocation
from tests.contract.test_fleet_environment_repositories import add_envs, add_hosts, at, make_env, make_host


class _Clock:
    def __init__(self, now):
        self.value = now

    def now(self):
        return self.value


class _Stopper:
    """The one EnvironmentService call the sweep makes (its own tests cover it)."""

    def __init__(self):
        self.stopped: list[tuple[str, str]] = []

    async def stop_env(self, uow, env, reason: str) -> None:
        env.transition(EnvStatus.STOPPING, reason, at(0))
        self.stopped.append((env.id, reason))


def ids(envs) -> list[int]:
    return sorted(int(e.id[-3:]) for e in envs)


async def due(uow_factory, now) -> list[int]:
    async with uow_factory() as uow:
        return ids(await uow.environments.list_autostop_due(now))


async def test_only_running_environments_with_a_policy_whose_time_has_come_are_due(uow_factory):
    host = make_host(1)
    await add_hosts(uow_factory, host)
    running = dict(status=EnvStatus.RUNNING, host_id=host.id)
    await add_envs(
        uow_factory,
        *[make_env(n, **running, started_at=at(0)) for n in range(1, 41)],  # no policy: never read
        make_env(41, **running, started_at=at(0), stop_after_minutes=30),
        make_env(42, **running, started_at=at(10), stop_after_minutes=30),
        make_env(43, **running, started_at=at(0), idle_stop_minutes=60),  # watched every sweep
        make_env(44, status=EnvStatus.STOPPED, host_id=host.id, started_at=at(0), stop_after_minutes=1),
        make_env(45, status=EnvStatus.QUEUED, idle_stop_minutes=5),
    )
    assert await due(uow_factory, at(1)) == [43]
    assert await due(uow_factory, at(30)) == [41, 43]
    assert await due(uow_factory, at(40)) == [41, 42, 43]

    # Stopped: not due; started again: its limit counts from the new start.
    async with uow_factory() as uow:
        env = await uow.environments.get("30000000-0000-0000-0000-000000000041")
        env.transition(EnvStatus.STOPPING, "stopping", at(31))
        env.transition(EnvStatus.STOPPED, "stopped", at(31))
        await uow.environments.update(env)
        await uow.commit()
    assert await due(uow_factory, at(40)) == [42, 43]
    async with uow_factory() as uow:
        env = await uow.environments.get("30000000-0000-0000-0000-000000000041")
        env.transition(EnvStatus.STARTING, "starting", at(50))
        env.transition(EnvStatus.RUNNING, "started", at(50))
        env.started_at = at(50)
        await uow.environments.update(env)
        await uow.commit()
    assert await due(uow_factory, at(79)) == [42, 43]
    assert await due(uow_factory, at(80)) == [41, 42, 43]


async def test_the_sweep_stops_what_is_past_its_limit_or_idle_and_nothing_else(uow_factory):
    host = make_host(1, gpus=2)
    g0, g1 = (g.uuid for g in host.gpus)
    await add_hosts(uow_factory, host)
    running = dict(status=EnvStatus.RUNNING, host_id=host.id, started_at=at(0))
    await add_envs(
        uow_factory,
        make_env(1, **running),
        make_env(2, **running, stop_after_minutes=30),
        make_env(3, **running, idle_stop_minutes=10, idle_gpu_threshold=5),
        make_env(4, **running, idle_stop_minutes=10, idle_gpu_threshold=5),
    )
    async with uow_factory() as uow:
        await uow.allocations.add_gpus([GpuAllocation(make_env(3).id, host.id, g0), GpuAllocation(make_env(4).id, host.id, g1)])
        await uow.commit()
    clock, stopper = _Clock(at(1)), _Stopper()
    sweep = AutoStop(uow=uow_factory, clock=clock, environments=stopper).sweep

    async def utilization(u0: int, u1: int) -> None:
        async with uow_factory() as uow:
            h = await uow.hosts.get(host.id)
            await uow.hosts.update(replace(h, gpu_utilization={g0: u0, g1: u1}))
            await uow.commit()

    assert await sweep() == []  # no readings yet: nobody is idle
    await utilization(1, 90)
    assert await sweep() == []  # env 3 idle from now (minute 1), env 4 busy
    async with uow_factory() as uow:
        assert (await uow.environments.get(make_env(3).id)).idle_since == at(1)
        assert (await uow.environments.get(make_env(4).id)).idle_since is None
    clock.value = at(11)
    assert await sweep() == [make_env(3).id]
    assert "idle" in stopper.stopped[-1][1]
    clock.value = at(30)
    assert await sweep() == [make_env(2).id]
    assert "30 minutes" in stopper.stopped[-1][1]
    clock.value = at(10_000)
    assert await sweep() == []  # env 1 has no policy, env 4 stays busy
    async with uow_factory() as uow:
        statuses = {int(e.id[-3:]): e.status for e in await uow.environments.list_by_status(list(EnvStatus))}
    assert statuses == {1: EnvStatus.RUNNING, 2: EnvStatus.STOPPING, 3: EnvStatus.STOPPING, 4: EnvStatus.RUNNING}
    assert await due(uow_factory, at(10_000)) == [4]


async def test_the_offline_sweep_reads_only_hosts_silent_since_its_cutoff(uow_factory):
    """``HostRepository.list_silent_since``: what the offline sweep loads instead of the
    whole fleet every few seconds (hosts never heard from are not silent: not yet up)."""
    fresh, old, older = make_host(1, last_heartbeat_at=at(10)), make_host(2, last_heartbeat_at=at(5)), make_host(3, last_heartbeat_at=at(1))
    never = make_host(4, last_heartbeat_at=None)
    await add_hosts(uow_factory, fresh, old, older, never)
    async with uow_factory() as uow:
        assert [h.id for h in await uow.hosts.list_silent_since(at(0))] == []
        silent = await uow.hosts.list_silent_since(at(6))
        assert [h.id for h in silent] == [old.id, older.id]
        assert [g.uuid for g in silent[1].gpus] == [g.uuid for g in older.gpus]  # with their GPUs
        assert len(await uow.hosts.list_silent_since(at(11))) == 3
