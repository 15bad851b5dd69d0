"""Host ports over random lives of environments (hypothesis), through the use cases on
in-memory adapters: no port is ever held twice on a host, an environment keeps the same
SSH and Jupyter ports from its first placement until it is deleted (also while stopped,
also when it starts on other GPUs), and deleting frees them."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from dependency_injector import providers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from remotegpu.application.environments.service import CreateRequest
from remotegpu.application.shared.clock import FrozenClock
from remotegpu.domain.environments.models import EnvStatus
from remotegpu.domain.shared.errors import Conflict
from remotegpu.entrypoints.containers import build_container
from tests.conftest import make_settings
from tests.unit.environments.conftest import World

OPS = st.lists(
    st.tuples(st.sampled_from(["create", "stop", "start", "start-cpu", "delete", "beat"]), st.integers(0, 7),
              st.integers(0, 3)),
    min_size=1, max_size=30,
)


async def _run(ops) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        container = build_container(make_settings(Path(tmp)), persistence="memory")
        container.clock.override(providers.Object(FrozenClock()))
        world = World(container, FrozenClock())
        host = await world.add_host(spec="4xNVIDIA A100-SXM4-80GB")
        alice = await world.user("alice")
        ws = await world.personal_ws(alice)
        envs: list[str] = []
        first_ports: dict[str, list] = {}
        deleted: set[str] = set()
        for op, index, gpus in ops:
            target = envs[index % len(envs)] if envs else None
            try:
                if op == "create":
                    view = await world.envs.create(alice, CreateRequest(ws, f"e{len(envs)}", gpu_count=gpus, cpu_cores=1,
                                                                        memory_gib=1))
                    envs.append(view.env.id)
                elif target is None or target in deleted:
                    continue
                elif op == "stop":
                    await world.envs.stop(alice, target)
                elif op in ("start", "start-cpu"):
                    await world.envs.start(alice, target, gpu=op == "start")
                elif op == "delete":
                    await world.envs.delete(alice, target)
                    deleted.add(target)
                else:
                    await host.beat(FakeStates.of(await host.beat()))
            except Conflict:
                continue  # not allowed in its current status: fine, the invariants still hold
            held: list[int] = []
            for env_id in envs:
                view = await world.envs.get(alice, env_id) if env_id not in deleted else None
                if view is None or view.env.status is EnvStatus.DELETED:
                    async with container.uow() as uow:
                        assert await uow.allocations.ports_of(env_id) == [], "a deleted environment holds no port"
                    continue
                ports = sorted((p.purpose, p.port) for p in view.ports)
                if ports:
                    first_ports.setdefault(env_id, ports)
                    assert ports == first_ports[env_id], "an environment's ports never change"
                else:
                    assert env_id not in first_ports, "ports are held until delete"
                held += [p.port for p in view.ports]
            assert len(held) == len(set(held)), "a host port held twice"


class FakeStates:
    """A perfect agent: whatever the server wants is what runs."""

    @staticmethod
    def of(reply) -> dict:
        out = {}
        for d in reply.desired:
            if d.desired != "deleted":
                out[d.env_id] = ("running" if d.desired == "running" else "stopped", d.generation)
        return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPS)
def test_ports_are_unique_and_held_for_an_environments_life(ops):
    asyncio.run(_run(ops))
