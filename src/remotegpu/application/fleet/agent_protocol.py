"""What an agent and the server tell each other on every heartbeat.

The agent reports its inventory and the observed state of every environment its
runtime manages; the reply carries the desired state of every environment placed on
that host. One round trip does both (level-triggered: nothing is lost if a beat is).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from remotegpu.application.environments.ports import RuntimeSpec
from remotegpu.domain.fleet.models import Gpu

DEFAULT_HEARTBEAT_SECONDS = 5.0
MISSED_BEATS_BEFORE_OFFLINE = 3


@dataclass(frozen=True)
class ObservedEnvironment:
    env_id: str
    status: str  # RuntimeState.status: running | stopped | missing | failed
    generation: int | None = None
    message: str = ""
    # SSH connections established to the environment right now: > 0 counts as use
    # (the idle policy's clock restarts), like Jupyter or the web terminal.
    ssh_sessions: int = 0
    # The public key the environment's sshd presents ("" when the runtime cannot tell).
    ssh_host_key: str = ""


@dataclass(frozen=True)
class QuarantinedEnvironment:
    """An environment whose container or volume carries the agent's labels but that the
    server did not ask for: stopped and kept, never removed by the agent."""

    env_id: str
    host_id: str = ""  # the host it was made for (its label); "" when unknown


@dataclass(frozen=True)
class HostReport:
    gpus: list[Gpu]
    cpu_cores: int
    memory_gib: int
    disk_gib: int
    runtime: str
    runtime_healthy: bool
    fake_gpus: bool = False
    observed: list[ObservedEnvironment] = field(default_factory=list)
    utilization: dict[str, int] = field(default_factory=dict)
    address: str = ""  # where users reach this host's published ports (SSH)
    # Where the platform (only it) reaches this host's private ports (Jupyter) and its
    # environments' SSH for the web terminal: the host's private-network address.
    private_address: str = ""
    agent_version: str = ""
    quarantined: list[QuarantinedEnvironment] = field(default_factory=list)


@dataclass(frozen=True)
class DesiredEnvironment:
    env_id: str
    desired: str  # Desired: running | stopped | deleted
    generation: int = 0
    spec: RuntimeSpec | None = None  # set when desired is running
    # Public keys the agent keeps in the environment's /root/.ssh/authorized_keys (its
    # managed block), written whenever they change — no restart. None: leave them alone.
    authorized_keys: list[str] | None = None


@dataclass(frozen=True)
class HeartbeatReply:
    host_id: str
    desired: list[DesiredEnvironment]
    interval_seconds: float = DEFAULT_HEARTBEAT_SECONDS
