"""Stand-ins for the host agent's small ports: credentials kept in memory, fixed sizes."""

from __future__ import annotations


class MemoryCredentials:
    def __init__(self) -> None:
        self.saved: tuple[str, str] | None = None

    def load(self) -> tuple[str, str] | None:
        return self.saved

    def save(self, host_id: str, agent_token: str) -> None:
        self.saved = (host_id, agent_token)


class FixedSystem:
    def __init__(self, cpu_cores: int = 16, memory_gib: int = 64, disk_gib: int = 500) -> None:
        self._sizes = (cpu_cores, memory_gib, disk_gib)

    def cpu_cores(self) -> int:
        return self._sizes[0]

    def memory_gib(self) -> int:
        return self._sizes[1]

    def disk_gib(self) -> int:
        return self._sizes[2]


async def memory_host_agent(world, name: str, gpus: str = "2xNVIDIA L4 24GB", **sizes: int):
    """A real HostAgent on the in-memory runtime, joined to ``world``'s server through the
    in-process link: its beats report what the runtime fakes (``set_ssh_sessions``).
    Returns (agent, runtime)."""
    from remotegpu.adapters.fleet.fake_probe import FakeGpuProbe
    from remotegpu.adapters.runtime import InMemoryRuntime
    from remotegpu.application.fleet.agent import HostAgent
    from remotegpu.entrypoints.embedded_agent import InProcessAgentLink

    _, join = await world.hosts.add(None, name)
    runtime = InMemoryRuntime()
    agent = HostAgent(
        runtime, FakeGpuProbe(gpus, seed=name), InProcessAgentLink(world.agents), FixedSystem(**sizes),
        name=name, join_token=join, credentials=MemoryCredentials(),
    )
    await agent.ensure_registered()
    return agent, runtime
