"""The client's address, the one helper for rate limits, the audit log and the access log.

Without trusted proxies (the default) it is the TCP peer. Behind reverse proxies the
operator lists (``REMOTEGPU_TRUSTED_PROXIES``, CIDRs), ``X-Forwarded-For`` is walked
from the right: each proxy appends the address it received the request from, so the
first hop that is not a trusted proxy is the client. Everything to the left of it was
written by the client itself and is ignored (else anyone could pick their own rate-limit
bucket or put a false address in the audit log).
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Iterable

from aiohttp import web

from remotegpu.entrypoints.http.keys import CONTAINER

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_CLIENT_IP: web.RequestKey[str | None] = web.RequestKey("client_ip")


@lru_cache(maxsize=8)
def parse_networks(value: str) -> tuple[Network, ...]:
    """``"10.0.0.0/8, 192.0.2.7, ::1"`` → networks; a bare address is a /32 (/128). ValueError names the bad entry."""
    networks = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or CIDR network") from None
    return tuple(networks)


def parse_address(value: str | None) -> IPAddress | None:
    """An address as proxies write it: ``1.2.3.4``, ``1.2.3.4:5678``, ``::1``, ``[::1]:80``; None if garbage."""
    if not value:
        return None
    value = value.strip()
    if value.startswith("["):
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:
        value = value.partition(":")[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def resolve(peer: str | None, forwarded_for: Iterable[str], trusted: tuple[Network, ...]) -> str | None:
    """The client address given the peer, the ``X-Forwarded-For`` header values and the trusted proxies."""
    address = parse_address(peer)
    if address is None:
        return peer or None
    if not _is_trusted(address, trusted):
        return str(address)
    hops = [hop for header in forwarded_for for hop in header.split(",") if hop.strip()]
    for hop in reversed(hops):
        hop_address = parse_address(hop)
        if hop_address is None:
            break  # not an address: the trusted proxy that passed it on is the best we know
        address = hop_address
        if not _is_trusted(address, trusted):
            break
    return str(address)


def client_ip(request: web.Request) -> str | None:
    """The client's address for ``request`` (computed once per request)."""
    if _CLIENT_IP in request:
        return request[_CLIENT_IP]
    trusted = parse_networks(request.app[CONTAINER].settings().trusted_proxies) if CONTAINER in request.app else ()
    ip = resolve(request.remote, request.headers.getall("X-Forwarded-For", []), trusted)
    request[_CLIENT_IP] = ip
    return ip


def _is_trusted(address: IPAddress, trusted: tuple[Network, ...]) -> bool:
    return any(address.version == net.version and address in net for net in trusted)
