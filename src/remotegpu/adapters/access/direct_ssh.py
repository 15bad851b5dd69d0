"""AccessGateway: direct SSH to the host port allocated for the environment's sshd.

Every entrant's registered keys go into the container's authorized_keys (the agent
keeps them in sync); users connect to ``host.address:<ssh port>`` as root. The
environment's own client key (``Environment.ssh_client_key``, made by the server for
this environment only) goes in too, first: the web terminal of environments on remote
hosts and the SSH gateway log in with it. It is restricted to what they need: a pty,
commands and subsystems (scp, sftp, rsync), and forwarding to the environment's own
loopback ports only (``ssh -L`` through the gateway); no agent or X11 forwarding, no
forwarding anywhere else. No key shared between environments is ever
installed: the block is replaced whole, so one from an older server (the former
platform-wide key) is gone after the next sync.
"""

from __future__ import annotations

from remotegpu.application.environments.access_gateway import (
    Endpoints,
    Entrant,
    HostProvision,
    SshEndpoint,
)
from remotegpu.application.environments.credentials import CLIENT_KEY_COMMENT
from remotegpu.domain.environments.models import Environment
from remotegpu.domain.fleet.models import Host

#: authorized_keys options of the platform's key (OpenSSH ≥ 7.2; a port of ``*`` matches any).
CLIENT_KEY_OPTIONS = 'restrict,pty,port-forwarding,permitopen="localhost:*",permitopen="127.0.0.1:*"'


def client_key_line(env: Environment) -> str | None:
    """The authorized_keys line of ``env``'s web-terminal key; None while it has none."""
    if not env.ssh_client_key:
        return None
    return f"{CLIENT_KEY_OPTIONS} {env.ssh_client_key} {CLIENT_KEY_COMMENT}"


class DirectSshGateway:
    name = "direct-ssh"

    async def provision(self, env: Environment, entrants: list[Entrant]) -> HostProvision:
        own = client_key_line(env)
        keys: list[str] = [own] if own else []
        for entrant in entrants:
            for key in entrant.public_keys:
                if key not in keys:
                    keys.append(key)
        return HostProvision(authorized_keys=keys)

    def endpoints(self, env: Environment, host: Host | None, ports: dict[str, int], fallback_host: str) -> Endpoints:
        if "ssh" not in ports:
            return Endpoints()
        address = (host.address if host and host.address else "") or fallback_host
        return Endpoints(ssh=SshEndpoint(host=address, port=ports["ssh"], host_key=env.ssh_host_key))
