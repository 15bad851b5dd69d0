"""Ports of the fleet context."""

from __future__ import annotations

from typing import Protocol

from remotegpu.domain.fleet.models import Gpu


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
