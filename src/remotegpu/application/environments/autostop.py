"""Auto-stop: a time limit per environment, and an idle policy from GPU utilisation.

Idle means every GPU of the environment reported utilisation under its threshold in
the host's heartbeats, and nobody used SSH, Jupyter or the terminal meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from remotegpu.application.environments.service import EnvironmentService
from remotegpu.application.shared.ports import Clock, UnitOfWorkFactory
from remotegpu.domain.environments.models import Environment


@dataclass
class AutoStop:
    uow: UnitOfWorkFactory
    clock: Clock
    environments: EnvironmentService

    async def sweep(self) -> list[str]:
        """Stop every running environment past its limit or idle too long; return their ids.

        Reads only the environments that can be due (``Environment.autostop_due_at``, an
        index range: those past their time limit and those with an idle policy), and
        only their hosts: on a fleet without auto-stop policies a sweep is one indexed
        query that finds nothing, with no scheduling lock taken."""
        now = self.clock.now()
        stopped = []
        async with self.uow() as uow:
            if not await uow.environments.list_autostop_due(now):
                return stopped
            await uow.lock_scheduling()
            hosts: dict[str, object] = {}
            changed = False
            for env in await uow.environments.list_autostop_due(now):  # again, under the lock
                idle_since = env.idle_since
                reason = self._time_limit_reason(env, now)
                if reason is None and env.idle_stop_minutes:
                    if env.host_id is not None and env.host_id not in hosts:
                        hosts[env.host_id] = await uow.hosts.get(env.host_id)
                    host = hosts.get(env.host_id) if env.host_id is not None else None
                    utilization = host.gpu_utilization if host is not None else {}
                    gpus = [a.gpu_uuid for a in await uow.allocations.gpus_of(env.id)]
                    reason = self._idle_reason(env, gpus, utilization, now)
                if reason is not None:
                    await self.environments.stop_env(uow, env, reason)
                    stopped.append(env.id)
                if reason is not None or env.idle_since != idle_since:  # not every running one, every sweep
                    await uow.environments.update(env)
                    changed = True
            if changed:  # a commit runs a queue pass: not every few seconds for nothing
                await uow.commit()
        return stopped

    async def record_activity(self, env_id: str) -> None:
        """SSH, Jupyter or terminal use: the environment is not idle."""
        async with self.uow() as uow:
            env = await uow.environments.get(env_id)
            if env is None:
                return
            env.last_activity_at = self.clock.now()
            env.idle_since = None
            await uow.environments.update(env)
            await uow.commit()

    @staticmethod
    def _time_limit_reason(env: Environment, now) -> str | None:
        if env.stop_after_minutes and env.started_at and now - env.started_at >= timedelta(minutes=env.stop_after_minutes):
            return f"auto-stop: ran for its limit of {env.stop_after_minutes} minutes"
        return None

    @staticmethod
    def _idle_reason(env: Environment, gpus: list[str], utilization: dict[str, int], now) -> str | None:
        readings = [utilization.get(u) for u in gpus]
        if not gpus or any(r is None for r in readings):
            return None  # without readings for every GPU we cannot call it idle
        if any(r >= env.idle_gpu_threshold for r in readings):
            env.idle_since = None
            return None
        if env.last_activity_at and (env.idle_since is None or env.last_activity_at > env.idle_since):
            env.idle_since = max(env.last_activity_at, env.idle_since or env.last_activity_at)
        env.idle_since = env.idle_since or now
        if now - env.idle_since >= timedelta(minutes=env.idle_stop_minutes):
            return (f"auto-stop: idle — GPU utilisation under {env.idle_gpu_threshold}% and no access "
                    f"for {env.idle_stop_minutes} minutes")
        return None
