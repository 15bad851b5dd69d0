"""Port: an interactive shell with a pseudo-terminal inside a running environment.

Two ways in, behind one port (the web terminal handler does not care which):

* ``remotegpu.adapters.runtime.docker_terminal`` — ``docker exec`` with a tty, for
  environments on this server's own machine (the embedded host) with a Docker runtime;
* ``remotegpu.adapters.access.ssh_terminal`` — an SSH session with a pty to the
  environment's sshd, logged in with that environment's own client key (the access
  gateway puts its public half into that environment's authorized_keys only) and
  accepting only that environment's platform-made host key, for every other host.

``TerminalRouter`` picks one per environment (``choose``).

Where the SSH bridge dials: the host's private address and the environment's published SSH
port — except on a Kubernetes host when this server reaches the cluster (in-cluster, or a
kubeconfig): there it dials the environment's Pod, its IP and sshd's container port 22
(``PodAddresses``; ``EnvironmentEntry.ssh_target``), as the app proxy does for JupyterLab.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

from remotegpu.domain.fleet.models import Host
from remotegpu.domain.shared.errors import Conflict

#: Runtimes whose environments run no sshd on their published ports: no SSH bridge.
RUNTIMES_WITHOUT_SSHD = frozenset({"local", "memory"})
#: sshd's port inside an environment's container (a Kubernetes Pod is dialled on it).
SSH_CONTAINER_PORT = 22


class PodAddresses(Protocol):
    """Where a Kubernetes environment's Pod listens (adapters/runtime/kube_apps.py)."""

    def address(self, env_id: str, container_port: int) -> tuple[str, int] | None:
        """(the running Pod's IP, ``container_port``), or None when ``env_id`` has no
        running Pod with an IP. Blocking (call it off the event loop); raises when the
        API server does not answer."""
        ...


class TerminalSession(Protocol):
    async def read(self) -> bytes:
        """The next output of the terminal; ``b""`` once the shell or the environment ended."""
        ...

    async def write(self, data: bytes) -> None:
        """Keystrokes (raw bytes) to the shell."""
        ...

    async def resize(self, cols: int, rows: int) -> None: ...

    async def close(self) -> None:
        """End the session (the shell sees its terminal hang up). Idempotent."""
        ...


@dataclass(frozen=True)
class TerminalTarget:
    """A running environment as a terminal reaches it: its host, its SSH host port, the
    host key its sshd must present and the private key that logs in to it (both the
    environment's own, see ``credentials.py``; "" when it has none yet: the SSH bridge
    then refuses to connect)."""

    env_id: str
    host: Host
    ssh_port: int | None = None
    ssh_host_key: str = ""
    ssh_client_key: str = field(default="", repr=False)
    #: Set for a Kubernetes Pod dialled directly (its IP; ``ssh_port`` is then 22): wins
    #: over the host's private address.
    address: str = ""

    @property
    def private_address(self) -> str:
        """Where the platform reaches the environment's sshd: the Pod's IP when ``address``
        is set, else the host's private address (see ``private_address_of``)."""
        return self.address or private_address_of(self.host)


def private_address_of(host: Host) -> str:
    """The address the platform reaches ``host``'s private services on: what its agent
    reports (``--private-address``); loopback for a host whose agent reported none yet
    (the embedded host of a server older than the field)."""
    return host.private_address or "127.0.0.1"


class TerminalOpener(Protocol):
    async def open(self, target: TerminalTarget, *, cols: int = 80, rows: int = 24) -> TerminalSession:
        """A login shell as root in ``/root/workspace`` of the running environment.
        Raises ``EnvironmentRuntimeError`` when it cannot be reached or does not run."""
        ...


@dataclass
class TerminalRouter:
    """A ``TerminalOpener`` that picks the way in per environment.

    ``local`` (docker exec) serves the environments of ``local_host_id()`` — this
    machine's embedded host — when its runtime is reachable here; ``ssh`` serves every
    other environment with an SSH port on a runtime that runs sshd. Neither: ``Conflict``
    ``terminal_unavailable`` (answered as 409)."""

    local_host_id: Callable[[], str | None]
    local: TerminalOpener | None = None
    ssh: TerminalOpener | None = None

    def choose(self, target: TerminalTarget) -> TerminalOpener | None:
        local_id = self.local_host_id()
        if self.local is not None and local_id is not None and target.host.id == local_id:
            return self.local
        if self.ssh is not None and target.ssh_port and target.host.runtime not in RUNTIMES_WITHOUT_SSHD:
            return self.ssh
        return None

    async def open(self, target: TerminalTarget, *, cols: int = 80, rows: int = 24) -> TerminalSession:
        opener = self.choose(target)
        if opener is None:
            raise Conflict(
                "the web terminal cannot reach this environment (no runtime this server can reach, no SSH); use SSH",
                code="terminal_unavailable",
            )
        return await opener.open(target, cols=cols, rows=rows)
