"""Which URLs and addresses a webhook may reach (SSRF policy).

A webhook URL is chosen by a tenant and fetched by the server, from inside the
platform's network. Everything that is not a public unicast address is refused:
loopback, private (RFC 1918), link-local (and the cloud metadata service),
CGNAT, IPv6 unique-local, unspecified, multicast, reserved — and the same
addresses wrapped in IPv6 (IPv4-mapped/compatible, 6to4, NAT64, Teredo). An
operator may allow CIDRs explicitly (a receiver on the same machine, tests).

Hosts that only look like names but are numbers in disguise (``2130706433``,
``0x7f000001``, ``0177.0.0.1``, ``127.1``) are refused outright: resolvers
interpret them as IPv4 addresses in ways that differ between libraries.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from remotegpu.domain.shared.errors import InvalidInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_URL_LENGTH = 2048
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]*))*\.?$", re.IGNORECASE)

_FORBIDDEN: tuple[Network, ...] = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24",
    "224.0.0.0/4", "240.0.0.0/4",
    "::/128", "::1/128", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8", "2001:db8::/32", "100::/64",
))
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


class AddressRefused(InvalidInput):
    code = "address_refused"


def parse_cidrs(text: str) -> tuple[Network, ...]:
    """``REMOTEGPU_WEBHOOK_ALLOW_CIDRS``: comma-separated CIDRs (or single addresses)."""
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip())


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    packed = ip.packed
    if packed[:12] == bytes(12) and int(ip) > 1:  # IPv4-compatible ::a.b.c.d (deprecated)
        return ipaddress.IPv4Address(packed[12:])
    if any(ip in net for net in _NAT64):
        return ipaddress.IPv4Address(packed[12:])
    return None


@dataclass(frozen=True)
class AddressPolicy:
    allowed: tuple[Network, ...] = ()

    def is_allowed(self, ip: IPAddress) -> bool:
        if any(ip.version == net.version and ip in net for net in self.allowed):
            return True
        if isinstance(ip, ipaddress.IPv6Address):
            inner = _embedded_ipv4(ip)
            if inner is not None:  # judged by the IPv4 address it carries (and reaches)
                return self.is_allowed(inner)
        if ip.is_multicast or ip.is_unspecified or ip.is_loopback or ip.is_link_local or ip.is_reserved:
            return False
        if any(ip.version == net.version and ip in net for net in _FORBIDDEN):
            return False
        if ip.is_private or (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local):
            return False
        return True

    def check(self, ip: IPAddress, host: str) -> None:
        if not self.is_allowed(ip):
            raise AddressRefused(f"{host} resolves to {ip}, which webhooks may not reach (not a public address)",
                                 details={"host": host, "address": str(ip)})


@dataclass(frozen=True)
class WebhookUrl:
    url: str
    scheme: str
    host: str  # without brackets or a trailing dot
    port: int
    literal: IPAddress | None  # the host is an IP address


def parse_url(url: str) -> WebhookUrl:
    """A URL webhooks may be sent to, as far as can be told without resolving it."""
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise InvalidInput(f"url: at most {MAX_URL_LENGTH} characters", details={"field": "url"})
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidInput(f"url: {exc}", code="invalid_url", details={"field": "url"}) from None
    if parts.scheme not in ("http", "https"):
        raise InvalidInput("url: only http and https URLs", code="invalid_url", details={"field": "url"})
    if parts.username is not None or parts.password is not None:
        raise InvalidInput("url: no credentials in the URL (sign with the endpoint's secret)", code="invalid_url",
                           details={"field": "url"})
    host = (parts.hostname or "").rstrip(".").lower()
    if not host or any(c.isspace() or c in "\\%" for c in host):
        raise InvalidInput("url: a host is required", code="invalid_url", details={"field": "url"})
    if host == "localhost" or host.endswith(".localhost"):
        raise AddressRefused(f"{host} is this machine", details={"host": host})
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
        if _NUMERIC_HOST.match(host):
            raise AddressRefused(f"{host} is a number in disguise, not a host name or a dotted IPv4 address",
                                 details={"host": host}) from None
    return WebhookUrl(url, parts.scheme, host, port or (443 if parts.scheme == "https" else 80), literal)
