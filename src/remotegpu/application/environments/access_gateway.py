"""The ``AccessGateway`` port: how people get into a running environment.

A gateway answers two questions, both from the server's side:

* ``provision`` — what the environment's host must set up inside the container so
  that exactly the given entrants get in (and nobody else). It travels to the host
  agent in the desired state of every heartbeat (level-triggered: idempotent, cheap).
* ``endpoints`` — what a user is told (``GET /environments/{id}/access``).

Adapters (``remotegpu.adapters.access``): ``DirectSshGateway`` installs the entrants'
own keys and points at the allocated host port. A JumpServer adapter would install
the bastion's key and register the asset and its permissions with JumpServer; a
remote-desktop (Guacamole) adapter would create a connection and answer its URL.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Protocol

from remotegpu.domain.environments.models import Environment
from remotegpu.domain.fleet.models import Host


@dataclass(frozen=True)
class Entrant:
    """Someone allowed into an environment, with their registered SSH public keys."""

    user_id: str
    public_keys: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class HostProvision:
    """What the host agent installs in the container for a gateway."""

    authorized_keys: list[str] = field(default_factory=list)


#: What may stand in a ``~/.ssh/config`` line, a command or a known_hosts line we hand
#: to users: ssh reads the config line by line, so one newline in a name would let its
#: author add directives (``ProxyCommand`` runs commands on the reader's workstation).
_HOST_NAME = re.compile(r"(?=.{1,253}\Z)[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*")
#: A Unix user name, or an environment's id (the SSH gateway's login names).
_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_ALIAS = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_HOST_KEY = re.compile(r"[a-z0-9-]{1,64} [A-Za-z0-9+/]{1,8192}={0,3}")


class UnsafeSshEndpoint(ValueError):
    """A part of an SSH endpoint would not be safe in a config line or a command."""


def safe_host(host: str) -> bool:
    """A DNS name or an IP address, nothing else (no IPv6 zone: ``%anything`` parses as one)."""
    if "%" in host:
        return False
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(_HOST_NAME.fullmatch(host))


@dataclass(frozen=True)
class SshEndpoint:
    """Where and how to SSH in. Every part is checked on construction, so the command,
    the config block and the known_hosts line are built only from validated parts."""

    host: str
    port: int
    user: str = "root"
    host_key: str = ""  # what its sshd presents ("type base64"); "" while not known

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not safe_host(self.host):
            raise UnsafeSshEndpoint(f"unsafe SSH host {self.host!r}")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 1 <= self.port <= 65535:
            raise UnsafeSshEndpoint(f"invalid SSH port {self.port!r}")
        if not isinstance(self.user, str) or not _USER.fullmatch(self.user):
            raise UnsafeSshEndpoint(f"unsafe SSH user {self.user!r}")
        if self.host_key and not _HOST_KEY.fullmatch(self.host_key):
            raise UnsafeSshEndpoint("unsafe SSH host key")

    @property
    def command(self) -> str:
        return f"ssh -p {self.port} {self.user}@{self.host}"

    @property
    def known_hosts(self) -> str:
        """A line for ~/.ssh/known_hosts that pins the key ("" while it is not known)."""
        if not self.host_key:
            return ""
        name = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
        return f"{name} {self.host_key}"

    def config(self, alias: str) -> str:
        """A ``~/.ssh/config`` block; ``alias`` must be a plain token (UnsafeSshEndpoint otherwise)."""
        if not isinstance(alias, str) or not _ALIAS.fullmatch(alias):
            raise UnsafeSshEndpoint(f"unsafe SSH config alias {alias!r}")
        return f"Host {alias}\n    HostName {self.host}\n    Port {self.port}\n    User {self.user}\n"


@dataclass(frozen=True)
class Endpoints:
    ssh: SshEndpoint | None = None
    desktop_url: str | None = None  # remote desktop (a Guacamole adapter)


def gateway_endpoint(env_id: str, host: str, port: int, host_key: str = "") -> SshEndpoint:
    """The SSH gateway's way into ``env_id``: log in as the environment's id
    (``application/environments/ssh_gateway.py``); ``host_key`` is the gateway's own."""
    return SshEndpoint(host=host, port=port, user=env_id, host_key=host_key)


class AccessGateway(Protocol):
    name: str

    async def provision(self, env: Environment, entrants: list[Entrant]) -> HostProvision:
        """What the host must install so that exactly ``entrants`` can get in. Called
        on every heartbeat of the environment's host: idempotent, no slow side effects
        (a gateway with a remote API syncs it elsewhere and answers from its state)."""
        ...

    def endpoints(self, env: Environment, host: Host | None, ports: dict[str, int], fallback_host: str) -> Endpoints:
        """How users reach the running ``env``: ``ports`` are its host ports by purpose
        (``ssh``, ``jupyter``); ``fallback_host`` is used when the host reports no address."""
        ...
