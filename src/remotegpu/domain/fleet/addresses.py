"""Host addresses an agent (or an admin) reports: what may be stored.

A host's ``address`` ends up in users' ``~/.ssh/config`` and ``known_hosts`` lines, its
``private_address`` is where the platform's proxy and web terminal connect. Both come
from the agent, which is trusted with its own host only: an address is one IP literal
or one DNS host name — no spaces, newlines, ports, paths or URL parts that could smuggle
extra lines or options into those files — and never one that points the platform back
at itself (loopback), at "any" (unspecified) or at link-local / metadata services,
unless an admin allowed loopback for that host (an agent on the server's own machine).
"""

from __future__ import annotations

import ipaddress
import re

from remotegpu.domain.shared.errors import InvalidInput

MAX_ADDRESS_CHARS = 253  # a DNS name's limit; every IP literal is shorter
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")  # "this host" on Linux, like 0.0.0.0


def _refuse(field: str, value: str, why: str) -> InvalidInput:
    return InvalidInput(f"{field} {value[:80]!r} {why}", code="invalid_address", details={"field": field})


def check_address(value: str, *, field: str = "address", allow_loopback: bool = False) -> str:
    """``value`` if it may be stored as a host address, else ``InvalidInput``
    (code ``invalid_address``). "" (nothing reported) passes."""
    if value == "":
        return value
    if len(value) > MAX_ADDRESS_CHARS or not value.isascii() or not value.isprintable():
        raise _refuse(field, value, "is not an IP address or a DNS host name")
    try:
        ip = ipaddress.ip_address(value) if "%" not in value else None  # no IPv6 zone ids
    except ValueError:
        ip = None
    if ip is None:
        labels = value.split(".")
        if not all(_LABEL.match(label) for label in labels) or labels[-1].isdigit():
            raise _refuse(field, value, "is not an IP address or a DNS host name (no ports, paths, spaces or schemes)")
        loopback = labels[-1].lower() == "localhost"
    else:
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if ip.is_unspecified or (isinstance(ip, ipaddress.IPv4Address) and ip in _THIS_NETWORK):
            raise _refuse(field, value, "is the unspecified address: name the address the host is reached at")
        loopback = ip.is_loopback
        if ip.is_link_local or ip.is_multicast or (ip.is_reserved and not loopback):  # ::1 is in reserved ::/8
            raise _refuse(field, value, "is a link-local, multicast or reserved address")
    if loopback and not allow_loopback:
        raise _refuse(
            field, value,
            "is a loopback address: only allowed for a host an admin created with allow_loopback "
            "(an agent on the server's own machine)",
        )
    return value
