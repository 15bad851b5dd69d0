"""Ports of the fleet context."""

from __future__ import annotations

from datetime import datetime

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from remotegpu.domain.fleet.models import Gpu

if TYPE_CHECKING:
    from collections.abc import Iterable

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
    """Hosts with their GPU inventory (a GPU UUID belongs to at most one host)."""

    async def add(self, host: "Host") -> None: ...
    async def get(self, host_id: str) -> "Host | None": ...
    async def get_by_name(self, name: str) -> "Host | None": ...
    async def get_by_join_token(self, token_hash: str) -> "Host | None": ...
    async def get_by_agent_token(self, token_hash: str) -> "Host | None": ...
    async def update(self, host: "Host") -> None:
        """Save the host and replace its own GPU rows (never another host's: a UUID
        that another host owns is refused with ``Conflict``)."""
        ...
    async def gpu_owners(self, uuids: "Iterable[str]") -> dict[str, str]:
        """uuid → id of the host whose inventory holds it, for those of ``uuids`` held anywhere."""
        ...
    async def list(self) -> "list[Host]":
        """Every host, ordered by name."""
        ...
    async def list_silent_since(self, before: "datetime") -> "list[Host]":
        """Hosts whose last heartbeat is older than ``before`` (never-heard ones not
        included), ordered by name: what the offline sweep can act on, without loading
        the whole fleet (and its GPUs) every few seconds."""
        ...
    async def gpu_types(self) -> dict[str, tuple[int, int, int]]:
        """model → (healthy GPUs, of them not held by a live environment, memory_mib) over
        hosts that accept new work: ``FleetState.gpu_counts`` without building the fleet."""
        ...
    async def delete(self, host_id: str) -> None: ...


class AgentLink(Protocol):
    """The agent's side of the agent ↔ server conversation (HTTP, or in-process when embedded)."""

    async def register(self, join_token: str, name: str, report: "HostReport") -> tuple[str, str]:
        """Exchange the one-time join token for (host_id, agent_token)."""
        ...

    async def heartbeat(self, agent_token: str, report: "HostReport") -> "HeartbeatReply": ...


@runtime_checkable
class WaitingAgentLink(Protocol):
    """Optional ability of a link: long-poll for work between heartbeats."""

    async def wait_for_work(self, agent_token: str, known: dict[str, tuple[str, int]], timeout: float) -> bool:
        """True once the host's desired state differs from ``known`` (env id →
        (desired, generation)), False after ``timeout`` seconds. Raises
        ``AgentLinkError`` (``status`` 404 from a server that cannot long-poll)."""
        ...


# --- the host agent's own ports -------------------------------------------------------


class SystemInfo(Protocol):
    """The machine the agent runs on: sizes it reports in every heartbeat.

    Cheap, synchronous, never raises (a size that cannot be read is 0)."""

    def cpu_cores(self) -> int: ...
    def memory_gib(self) -> int: ...
    def disk_gib(self) -> int:
        """Total size of the file system holding the agent's data (environment disks)."""
        ...


class AgentCredentialStore(Protocol):
    """Where an agent keeps the (host_id, agent_token) it got at registration.

    The join token is one-time: an agent that restarts must find its agent token here."""

    def load(self) -> tuple[str, str] | None:
        """(host_id, agent_token), or None when the agent has not registered yet."""
        ...

    def save(self, host_id: str, agent_token: str) -> None: ...


class AgentLinkError(Exception):
    """The server could not be reached, or answered with an error.

    ``status`` is the HTTP status (None when no answer came), ``code`` the server's
    error code when it sent one."""

    def __init__(self, message: str, *, status: int | None = None, code: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


class AgentTokenRejected(AgentLinkError):
    """The server no longer accepts this agent's token (host deleted or re-issued):
    the agent must be registered again with a new join token."""
