"""Creating a bridge network when Docker's own address pools are used up.

Docker gives every network created without a subnet one from its
``default-address-pools``: with Docker's defaults that is 172.17-31.0.0/16 and
192.168.0.0/16 cut in /20s, about 30 networks on one daemon, shared by everything on
it. The platform makes one network per workspace (``docker_network.py``) and one per
multi-node job (``workloads/docker_jobs.py``), so a busy host runs out; Docker then
refuses with "could not find an available, non-overlapping IPv4 address pool".

``create_network`` asks Docker first (an operator's ``default-address-pools`` wins) and
only on that refusal takes a free /24 itself from ``REMOTEGPU_DOCKER_FALLBACK_SUBNETS``
(comma-separated CIDRs, default 10.213.0.0/16: 256 more networks), skipping every
subnet a Docker network or a route of this machine already uses. Two processes may
pick the same /24 at the same moment; Docker refuses the second (overlapping pool),
which then picks again.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import random
import subprocess
from typing import Any

from docker.errors import APIError
from docker.types import IPAMConfig, IPAMPool

log = logging.getLogger("remotegpu.runtime.docker_subnets")

DEFAULT_FALLBACK = "10.213.0.0/16"
_EXHAUSTED = ("could not find an available, non-overlapping", "all predefined address pools have been fully subnetted")
_OVERLAP = ("overlaps with other one", "pool overlaps")
ATTEMPTS = 20


def fallback_ranges() -> list[ipaddress.IPv4Network]:
    raw = os.environ.get("REMOTEGPU_DOCKER_FALLBACK_SUBNETS", "").strip() or DEFAULT_FALLBACK
    return [ipaddress.IPv4Network(part.strip()) for part in raw.split(",") if part.strip()]


def pools_exhausted(exc: APIError) -> bool:
    text = str(exc.explanation or exc).lower()
    return any(marker in text for marker in _EXHAUSTED)


def _overlapping(exc: APIError) -> bool:
    text = str(exc.explanation or exc).lower()
    return any(marker in text for marker in _OVERLAP)


def used_subnets(client: Any) -> list[ipaddress.IPv4Network]:
    """Every IPv4 subnet a Docker network on this daemon or a route of this machine covers."""
    used = []
    for network in client.networks.list():
        for config in (network.attrs.get("IPAM") or {}).get("Config") or []:
            subnet = config.get("Subnet") or ""
            if subnet and ":" not in subnet:
                used.append(ipaddress.ip_network(subnet, strict=False))
    try:
        routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True, timeout=5, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):  # no iproute2: Docker's own overlap check still refuses
        routes = ""
    for line in routes.splitlines():
        first = line.split(" ", 1)[0]
        if "/" in first:
            used.append(ipaddress.ip_network(first, strict=False))
    return used


def free_subnet(used: list[ipaddress.IPv4Network], ranges: list[ipaddress.IPv4Network]) -> ipaddress.IPv4Network | None:
    """A /24 inside ``ranges`` that overlaps nothing in ``used``, at random among the free ones
    (so that two processes rarely pick the same), or None when every one is taken."""
    free = [candidate for block in ranges for candidate in block.subnets(new_prefix=24) if block.prefixlen <= 24
            and not any(candidate.overlaps(u) for u in used)]
    return random.choice(free) if free else None


def create_network(client: Any, name: str, **kwargs: Any) -> Any:
    """``client.networks.create(name, **kwargs)``; when Docker's pools are used up, the same
    with a /24 of the fallback ranges (see the module's text)."""
    try:
        return client.networks.create(name, **kwargs)
    except APIError as exc:
        if not pools_exhausted(exc):
            raise
        first = exc
    ranges = fallback_ranges()
    for _ in range(ATTEMPTS):
        subnet = free_subnet(used_subnets(client), ranges)
        if subnet is None:
            break
        ipam = IPAMConfig(pool_configs=[IPAMPool(subnet=str(subnet), gateway=str(subnet.network_address + 1))])
        try:
            network = client.networks.create(name, ipam=ipam, **kwargs)
        except APIError as exc:
            if _overlapping(exc):  # another process took it a moment ago
                continue
            raise
        log.warning("Docker's address pools are used up; network %s got %s from the fallback ranges", name, subnet)
        return network
    raise APIError(f"network {name}: Docker's address pools and the fallback ranges "
                   f"({', '.join(map(str, ranges))}) are all used up; widen REMOTEGPU_DOCKER_FALLBACK_SUBNETS "
                   "or Docker's default-address-pools", explanation=str(first.explanation or first))
