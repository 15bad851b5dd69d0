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
