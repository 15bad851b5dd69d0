"""Ports of the fleet context."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from remotegpu.domain.fleet.models import Gpu

if TYPE_CHECKING:
    from remotegpu.application.fleet.agent_protocol import HeartbeatReply, HostReport
    from remotegpu.domain.fleet.models import Host


class GpuProbe(Protocol):
    """Reads the GPUs of the machine the agent runs on.

    Both methods are synchronous and cheap enough to call on every heartbeat; they
    never raise because a driver is missing or a device misbehaves — a machine
    without a usable driver simply has no GPUs.
    """

    def inventory(self) -> list[Gpu]:
        """The GPUs present now, ordered by index.

        ``uuid`` is stable across reboots and is what allocations refer to.
        ``numa_node`` / ``nvlink_group`` are None when the topology is unknown;
        ``nvlink_group`` ids only mean something within this host. A device that
        answers but reports errors is returned with ``healthy=False``; one whose UUID
        cannot be read is left out. Empty when no GPU or driver is available.
        """
        ...

    def utilization(self) -> dict[str, int]:
        """GPU uuid → current utilization in percent (0–100).

        GPUs whose utilization cannot be read are absent; empty when unknown.
        """
        ...


class HostRepository(Protocol):
    """Hosts with their GPU inventory. ``update`` replaces the stored GPU list."""

    async def add(self, host: "Host") -> None: ...
    async def get(self, host_id: str) -> "Host | None": ...
    async def get_by_name(self, name: str) -> "Host | None": ...
    async def get_by_join_token(self, token_hash: str) -> "Host | None": ...
    async def get_by_agent_token(self, token_hash: str) -> "Host | None": ...
    async def update(self, host: "Host") -> None: ...
    async def list(self) -> "list[Host]":
        """Every host, ordered by name."""
        ...
    async def delete(self, host_id: str) -> None: ...


class AgentLink(Protocol):
    """The agent's side of the agent ↔ server conversation (HTTP, or in-process when embedded)."""

    async def register(self, join_token: str, name: str, report: "HostReport") -> tuple[str, str]:
        """Exchange the one-time join token for (host_id, agent_token)."""
        ...

    async def heartbeat(self, agent_token: str, report: "HostReport") -> "HeartbeatReply": ...
