"""A world of use cases on in-memory adapters with a hand-moved clock and a fake GPU host."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from dependency_injector import providers

from remotegpu.application.fleet.agent_protocol import HostReport, ObservedEnvironment
from remotegpu.application.shared.clock import FrozenClock
from remotegpu.domain.fleet.models import parse_fake_gpus
from remotegpu.entrypoints.containers import build_container
from tests.conftest import make_settings


@dataclass
class FakeHost:
    """Stands in for an agent: reports an inventory and whatever containers we say run."""

    world: "World"
    host_id: str
    token: str
    gpus: list

    def report(self, observed: dict[str, tuple[str, int | None]] | None = None) -> HostReport:
        return HostReport(
            gpus=self.gpus, cpu_cores=64, memory_gib=512, disk_gib=1000, runtime="memory", runtime_healthy=True,
            fake_gpus=True,
            observed=[ObservedEnvironment(i, s, g) for i, (s, g) in (observed or {}).items()],
        )

    async def beat(self, observed: dict[str, tuple[str, int | None]] | None = None):
        return await self.world.agents.heartbeat(self.token, self.report(observed))

    async def beat_all_running(self):
        """Report every environment the server wants running as running (a perfect agent)."""
        reply = await self.beat(self.observed_from(await self.beat()))
        return reply

    @staticmethod
    def observed_from(reply) -> dict:
        out = {}
        for d in reply.desired:
            out[d.env_id] = {"running": ("running", d.generation), "stopped": ("stopped", d.generation)}.get(d.desired, ("missing", None))
            if d.desired == "deleted":
                del out[d.env_id]
        return out


@dataclass
class World:
    container: object
    clock: FrozenClock

    @property
    def envs(self):
        return self.container.environment_service()

    @property
    def agents(self):
        return self.container.agent_service()

    @property
    def hosts(self):
        return self.container.host_service()

    async def user(self, name: str, admin: bool = False):
        svc = self.container.auth_service()
        user = await svc.register(name, f"{name}@example.com", "long enough password")
        if admin:
            user = await self.container.admin_service().create_admin(name, f"{name}@example.com", "long enough password")
        return user

    async def personal_ws(self, user) -> str:
        views, _ = await self.container.workspace_service().list_mine(user, limit=10, offset=0)
        return views[0].workspace.id

    async def add_host(self, name: str = "gpu-1", spec: str = "4xNVIDIA A100-SXM4-80GB") -> FakeHost:
        host, join = await self.hosts.add(None, name)
        gpus = parse_fake_gpus(spec, seed=name)
        fake = FakeHost(self, host.id, "", gpus)
        _, token = await self.agents.register(join, name, fake.report())
        fake.token = token
        return fake


@pytest.fixture
def world(tmp_path):
    container = build_container(make_settings(tmp_path), persistence="memory")
    clock = FrozenClock()
    container.clock.override(providers.Object(clock))
    return World(container, clock)
