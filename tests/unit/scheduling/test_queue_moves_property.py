"""The queue never stalls: after any operation commits, no queued environment that the
queue's rule would start is left waiting (hypothesis, stateful, in-memory adapters).

Random sequences of create, stop, start, delete, cordon / uncordon, host offline /
back, workspace quota and owner cap changes, overcommit change and agent reports (running, stopped, removed,
failed) run through the real use cases. After each one, checked on the committed
state, independently of the queue pass:

* the first queued environment whose workspace quota allows it (FIFO head: nothing
  ahead of it can hold a host back) fits no host — ``place`` finds nothing;
* a queue pass run now would start nothing (the committed state is a fixed point).

Small hosts (2 cores, 2 fake GPUs) so that capacity is scarce and the queue busy.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from dependency_injector import providers
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from remotegpu.application.environments import placement as pl
from remotegpu.application.environments.queue_pass import QueuePass
from remotegpu.application.environments.service import CreateRequest
from remotegpu.application.fleet.agent_protocol import HostReport, ObservedEnvironment
from remotegpu.application.shared.clock import FrozenClock
from remotegpu.domain.environments.models import EnvStatus
from remotegpu.domain.fleet.models import HostStatus, parse_fake_gpus
from remotegpu.domain.scheduling import Allocation, FleetState, place
from remotegpu.domain.shared.errors import DomainError
from remotegpu.domain.workspaces.quota import Quota, Usage, UserQuota
from remotegpu.entrypoints.containers import build_container
from tests.conftest import make_settings

MODEL = "NVIDIA A100-SXM4-80GB"


class QueueWorld(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.tmp = tempfile.TemporaryDirectory()
        self.container = build_container(make_settings(Path(self.tmp.name)), persistence="memory")
        self.clock = FrozenClock()
        self.container.clock.override(providers.Object(self.clock))
        self.hosts: list[dict] = []  # {"id", "token", "gpus", "observed": {env_id: (state, generation)}}
        self.env_ids: list[str] = []
        self.workspaces: list[str] = []

    def run(self, coro):
        # Every step a second later: queue order (queued_at, then random ids) stays the
        # same when hypothesis replays a case.
        self.clock.advance(seconds=1)
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.loop.close()
        self.tmp.cleanup()

    # --- set-up ------------------------------------------------------------------------
    @initialize()
    def setup(self) -> None:
        async def go():
            c = self.container
            self.admin = await c.admin_service().create_admin("root", "root@example.com", "long enough password")
            self.users = []
            for name in ("alice", "bob"):
                user = await c.auth_service().register(name, f"{name}@example.com", "long enough password")
                views, _ = await c.workspace_service().list_mine(user, limit=10, offset=0)
                self.users.append(user)
                self.workspaces.append(views[0].workspace.id)
            for name in ("gpu-1", "gpu-2"):
                host, join = await c.host_service().add(None, name)
                entry = {"id": host.id, "name": name, "gpus": parse_fake_gpus(f"2x{MODEL}", seed=name), "observed": {}}
                _, entry["token"] = await c.agent_service().register(join, name, self.report(entry))
                self.hosts.append(entry)

        self.run(go())

    def report(self, host: dict) -> HostReport:
        return HostReport(
            gpus=host["gpus"], cpu_cores=2, memory_gib=8, disk_gib=100, runtime="memory", runtime_healthy=True,
            fake_gpus=True, observed=[ObservedEnvironment(i, s, g) for i, (s, g) in host["observed"].items()],
        )

    async def beat(self, host: dict, fail: str | None = None) -> None:
        """A perfect agent: reports what the server last asked for (or one env failed)."""
        if fail is not None and fail in host["observed"]:
            host["observed"][fail] = ("failed", host["observed"][fail][1])
        reply = await self.container.agent_service().heartbeat(host["token"], self.report(host))
        observed = {}
        for d in reply.desired:
            if d.desired == "running":
                observed[d.env_id] = ("running", d.generation)
            elif d.desired == "stopped":
                observed[d.env_id] = ("stopped", d.generation)
        host["observed"] = observed

    async def attempt(self, coro) -> None:
        try:
            await coro
        except DomainError:
            pass  # refused (wrong state, quota, never fits): a refusal changes nothing

    # --- operations --------------------------------------------------------------------
    @rule(who=st.integers(0, 1), count=st.integers(1, 3), gpus=st.integers(0, 2), cpu=st.integers(1, 2),
          memory=st.integers(1, 6))
    def create(self, who: int, count: int, gpus: int, cpu: int, memory: int) -> None:
        async def go():
            svc = self.container.environment_service()
            for _ in range(count):  # several at once: the queue should be busy
                self.clock.advance(seconds=1)  # a queue order that does not hang on random ids
                req = CreateRequest(self.workspaces[who], f"e{len(self.env_ids)}", gpu_count=gpus,
                                    gpu_model=MODEL if gpus else None, cpu_cores=cpu, memory_gib=memory, disk_gib=1)
                try:
                    view = await svc.create(self.users[who], req)
                except DomainError:
                    return
                self.env_ids.append(view.env.id)

        self.run(go())

    def _env(self, data) -> tuple[object, str] | None:
        if not self.env_ids:
            return None
        env_id = data.draw(st.sampled_from(self.env_ids))
        return self.admin, env_id

    @rule(data=st.data(), op=st.sampled_from(["stop", "start", "delete", "restart"]))
    def lifecycle(self, data, op: str) -> None:
        picked = self._env(data)
        if picked is None:
            return
        actor, env_id = picked
        svc = self.container.environment_service()
        self.run(self.attempt(getattr(svc, op)(actor, env_id)))

    @rule(host=st.integers(0, 1), status=st.sampled_from([HostStatus.CORDONED, HostStatus.READY, HostStatus.DRAINING]))
    def admin_status(self, host: int, status: HostStatus) -> None:
        self.run(self.attempt(self.container.host_service().set_status(self.admin, self.hosts[host]["id"], status)))

    @rule(host=st.integers(0, 1))
    def host_goes_offline(self, host: int) -> None:
        async def go():
            self.clock.advance(minutes=5)
            for i, other in enumerate(self.hosts):
                if i != host:
                    await self.beat(other)
            await self.container.agent_service().mark_offline_hosts()

        self.run(go())

    @rule(host=st.integers(0, 1), data=st.data())
    def agent_reports(self, host: int, data) -> None:
        entry = self.hosts[host]
        fail = data.draw(st.sampled_from([None, *(i for i in self.env_ids if i in entry["observed"])]))
        self.run(self.beat(entry, fail))

    @rule(who=st.integers(0, 1), gpus=st.sampled_from([None, 0, 1, 2, 4]), cpu=st.sampled_from([None, 1, 2, 8]))
    def quota(self, who: int, gpus, cpu) -> None:
        self.run(self.container.workspace_service().set_quota(
            self.admin, self.workspaces[who], Quota(max_gpus=gpus, max_cpu_cores=cpu)
        ))

    @rule(who=st.integers(0, 1), gpus=st.sampled_from([None, 0, 1, 2, 4]), cpu=st.sampled_from([None, 1, 2, 8]))
    def user_cap(self, who: int, gpus, cpu) -> None:
        """The owner's cap over every workspace they own (None: back to the default)."""
        cap = None if gpus is None and cpu is None else UserQuota(Quota(max_gpus=gpus, max_cpu_cores=cpu), max_workspaces=5)
        self.run(self.container.workspace_service().set_user_quota(self.admin, self.users[who].id, cap))

    @rule(host=st.integers(0, 1), cpu=st.sampled_from([1.0, 1.5, 2.0, 4.0]), memory=st.sampled_from([1.0, 2.0]))
    def overcommit(self, host: int, cpu: float, memory: float) -> None:
        self.run(self.container.host_service().set_overcommit(self.admin, self.hosts[host]["id"], cpu=cpu, memory=memory))

    # --- the property ----------------------------------------------------------------------
    @invariant()
    def no_queued_environment_that_fits_is_left_waiting(self) -> None:
        async def go():
            policy = self.container.workspace_policy()
            async with self.container.storage_uow() as uow:
                queued = await uow.environments.list_by_status([EnvStatus.QUEUED])
                # The fleet built here from whole environments, not by fleet_snapshot (the code under test).
                by_env: dict[str, list[str]] = {}
                for a in await uow.allocations.gpus():
                    by_env.setdefault(a.environment_id, []).append(a.gpu_uuid)
                fleet = FleetState(await uow.hosts.list(), [
                    Allocation(e.host_id, tuple(by_env.get(e.id, ())), e.cpu_cores, e.memory_gib)
                    for e in await uow.environments.list_by_status([s for s in EnvStatus if s.holds_resources])
                    if e.host_id is not None
                ])
                for env in queued:
                    usage = Usage(gpus=env.gpus_wanted, cpu_cores=env.cpu_cores, memory_gib=env.memory_gib)
                    if await policy.fits(uow, env.workspace_id, usage):
                        placement = place(fleet, pl.request_of(env, pin=pl.must_pin(env)))
                        assert placement is None, f"queue head {env.name} fits {placement} yet waits: {env.status_message}"
                        break
                started = await QueuePass(self.clock, policy)(uow)
                assert started == [], f"a queue pass now would start {started}"
                await uow.rollback()

        self.run(go())


QueueWorld.TestCase.settings = settings(
    max_examples=100, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_queue_never_stalls = QueueWorld.TestCase
