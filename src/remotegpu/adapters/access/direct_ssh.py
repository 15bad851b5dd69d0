"""AccessGateway: direct SSH to the host port allocated for the environment's sshd.

Every entrant's registered keys go into the container's authorized_keys (the agent
keeps them in sync); users connect to ``host.address:<ssh port>`` as root. The
platform's own public key (``PlatformSshKey``) goes in too, first: the web terminal of
environments on remote hosts logs in with it.
"""

from __future__ import annotations

import logging
from typing import Protocol

from remotegpu.application.environments.access_gateway import (
    Endpoints,
    Entrant,
    HostProvision,
    SshEndpoint,
)
from remotegpu.domain.environments.models import Environment
from remotegpu.domain.fleet.models import Host


log = logging.getLogger("remotegpu.access")


class PublicKeySource(Protocol):
    def public_key(self) -> str: ...


class DirectSshGateway:
    name = "direct-ssh"

    def __init__(self, platform_key: PublicKeySource | None = None) -> None:
        self._platform_key = platform_key

    async def provision(self, env: Environment, entrants: list[Entrant]) -> HostProvision:
        keys: list[str] = self._platform_keys()
        for entrant in entrants:
            for key in entrant.public_keys:
                if key not in keys:
                    keys.append(key)
        return HostProvision(authorized_keys=keys)

    def _platform_keys(self) -> list[str]:
        if self._platform_key is None:
            return []
        try:
            return [self._platform_key.public_key()]
        except (OSError, ValueError) as exc:  # users' keys must still be installed
            log.error("platform SSH key unusable, web terminals over SSH will fail: %s", exc)
            return []

    def endpoints(self, env: Environment, host: Host | None, ports: dict[str, int], fallback_host: str) -> Endpoints:
        if "ssh" not in ports:
            return Endpoints()
        address = (host.address if host and host.address else "") or fallback_host
        return Endpoints(ssh=SshEndpoint(host=address, port=ports["ssh"], host_key=env.ssh_host_key))
