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


@dataclass(frozen=True)
class SshEndpoint:
    host: str
    port: int
    user: str = "root"
    host_key: str = ""  # what its sshd presents ("type base64"); "" while not known

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
        return f"Host {alias}\n    HostName {self.host}\n    Port {self.port}\n    User {self.user}\n"


@dataclass(frozen=True)
class Endpoints:
    ssh: SshEndpoint | None = None
    desktop_url: str | None = None  # remote desktop (a Guacamole adapter)


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
