"""AccessGateway: direct SSH to the host port allocated for the environment's sshd.

Every entrant's registered keys go into the container's authorized_keys (the agent
keeps them in sync); users connect to ``host.address:<ssh port>`` as root.
"""

from __future__ import annotations

from remotegpu.application.environments.access_gateway import (
    Endpoints,
    Entrant,
    HostProvision,
    SshEndpoint,
)
from remotegpu.domain.environments.models import Environment
from remotegpu.domain.fleet.models import Host


class DirectSshGateway:
    name = "direct-ssh"

    async def provision(self, env: Environment, entrants: list[Entrant]) -> HostProvision:
        keys: list[str] = []
        for entrant in entrants:
            for key in entrant.public_keys:
                if key not in keys:
                    keys.append(key)
        return HostProvision(authorized_keys=keys)

    def endpoints(self, env: Environment, host: Host | None, ports: dict[str, int], fallback_host: str) -> Endpoints:
        if "ssh" not in ports:
            return Endpoints()
        address = (host.address if host and host.address else "") or fallback_host
        return Endpoints(ssh=SshEndpoint(host=address, port=ports["ssh"]))
