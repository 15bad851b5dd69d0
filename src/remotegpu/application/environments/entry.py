"""Getting into an environment: who may, where its services are, and activity.

Entering (SSH, JupyterLab, the web terminal) is more than seeing: the owner may enter;
when the owner shares the environment (``shared``), so may every member of its
workspace with at least the member role. Viewers, other members, workspace and
platform admins may see and operate it through the API but do not get a shell in
someone else's environment. Anyone who may not enter gets ``NotFound`` (the proxy and
the terminal reveal nothing), like outsiders.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime

from remotegpu.application.environments.access import load_visible
from remotegpu.application.environments.access_gateway import AccessGateway, Entrant
from remotegpu.application.environments.autostop import AutoStop
from remotegpu.application.environments.credentials import EnvironmentCredentials
from remotegpu.application.environments.terminal import (
    SSH_CONTAINER_PORT,
    PodAddresses,
    TerminalTarget,
    private_address_of,
)
from remotegpu.application.shared.ports import UnitOfWork, UnitOfWorkFactory
from remotegpu.domain.environments.models import Desired, Environment, EnvStatus
from remotegpu.domain.fleet.models import Host
from remotegpu.domain.identity.models import User
from remotegpu.domain.shared.errors import Conflict, NotFound
from remotegpu.domain.workspaces.models import Role

log = logging.getLogger(__name__)

#: Access activity is written at most this often per environment (seconds).
ACTIVITY_THROTTLE_SECONDS = 60.0


async def entrants(uow: UnitOfWork, env: Environment) -> list[Entrant]:
    """The owner, plus (when shared) every workspace member with at least the member role."""
    user_ids = [env.owner_id]
    if env.shared:
        for m in await uow.workspaces.list_members(env.workspace_id):
            if m.role.at_least(Role.MEMBER) and m.user_id not in user_ids:
                user_ids.append(m.user_id)
    found = []
    for user_id in user_ids:
        user = await uow.users.get(user_id)
        if user is None or not user.is_active:
            continue
        keys = [k.public_key for k in await uow.ssh_keys.list_for_user(user_id)]
        found.append(Entrant(user_id, keys))
    return found


async def may_enter(uow: UnitOfWork, actor: User, env: Environment) -> bool:
    if env.owner_id == actor.id:
        return True
    if not env.shared:
        return False
    member = await uow.workspaces.get_member(env.workspace_id, actor.id)
    return member is not None and member.role.at_least(Role.MEMBER)


@dataclass(frozen=True)
class Upstream:
    """Where a running environment's service listens, as the platform reaches it:
    ``address`` is its host's private address (Jupyter is published there only)."""

    env_id: str
    host: Host
    port: int
    jupyter_token: str
    started_at: datetime | None = None  # when it last became running (JupyterLab may still be starting)

    @property
    def address(self) -> str:
        return private_address_of(self.host)


@dataclass
class EnvironmentEntry:
    uow: UnitOfWorkFactory
    autostop: AutoStop
    gateway: AccessGateway
    credentials: EnvironmentCredentials | None = None  # None: no SSH bridge for the terminal
    #: The Pods of Kubernetes hosts as this server reaches them (called once per lookup;
    #: it answers None when this server reaches no cluster: the published port is used).
    pod_addresses: Callable[[], PodAddresses | None] | None = None
    throttle_seconds: float = ACTIVITY_THROTTLE_SECONDS
    _last_activity: dict[str, float] = field(default_factory=dict)

    async def load_enterable(self, actor: User, env_id: str) -> tuple[Environment, Host | None, dict[str, int]]:
        """The environment, its host and host ports by purpose, if ``actor`` may enter it
        (``NotFound`` otherwise); ``Conflict`` (``not_running``) when it does not run."""
        async with self.uow() as uow:
            env = await load_visible(uow, actor, env_id)
            if not await may_enter(uow, actor, env):
                raise NotFound("environment not found")
            if env.status is not EnvStatus.RUNNING:
                raise Conflict("the environment is not running", code="not_running", details={"status": env.status.value})
            host = await uow.hosts.get(env.host_id) if env.host_id else None
            ports = {p.purpose: p.port for p in await uow.allocations.ports_of(env.id)}
        return env, host, ports

    async def jupyter(self, actor: User, env_id: str) -> Upstream:
        env, host, ports = await self.load_enterable(actor, env_id)
        if host is None or "jupyter" not in ports:
            raise Conflict("the environment has no JupyterLab port", code="no_jupyter")
        return Upstream(env.id, host, ports["jupyter"], env.jupyter_token, env.started_at)

    async def desktop(self, actor: User, env_id: str) -> Upstream:
        """The VNC server of a desktop environment (``is_desktop_image``); ``port`` is its
        published host port, ``jupyter_token`` the secret its VNC password derives from."""
        env, host, ports = await self.load_enterable(actor, env_id)
        if host is None or "desktop" not in ports:
            raise Conflict("the environment has no desktop: create it from a desktop image", code="no_desktop")
        return Upstream(env.id, host, ports["desktop"], env.jupyter_token, env.started_at)

    async def app(self, app: str, actor: User, env_id: str) -> Upstream:
        """The upstream of one of the environment's web apps (``app_access.APPS``)."""
        if app == "desktop":
            return await self.desktop(actor, env_id)
        return await self.jupyter(actor, env_id)

    def terminal_target(self, env: Environment, host: Host, ports: dict[str, int]) -> TerminalTarget:
        """Where the web terminal goes for ``env`` (from ``load_enterable``), with the
        environment's own credentials for the SSH bridge: its host key to expect and its
        client key to log in with — nothing that opens another environment."""
        client_key = (self.credentials.client_private_key(env) if self.credentials else None) or ""
        return TerminalTarget(env.id, host, ports.get("ssh"), env.ssh_host_key, client_key)

    async def ssh_target(self, env: Environment, host: Host, ports: dict[str, int]) -> TerminalTarget:
        """``terminal_target``, dialling a Kubernetes environment's Pod (its IP, port 22)
        when this server reaches the cluster — the web terminal's and the SSH gateway's way
        in, like the app proxy's for JupyterLab. A Pod without an address (yet), or an API
        server that does not answer: ``Conflict`` ``not_running``. A server that reaches no
        cluster keeps the published (NodePort) address."""
        target = self.terminal_target(env, host, ports)
        if host.runtime != "kubernetes" or self.pod_addresses is None:
            return target
        pods = self.pod_addresses()
        if pods is None:
            return target
        try:
            found = await asyncio.to_thread(pods.address, env.id, SSH_CONTAINER_PORT)
        except Exception:  # noqa: BLE001 - the API server does not answer
            log.warning("cannot look up the Pod of %s", env.id, exc_info=True)
            found = None
        if found is None:
            raise Conflict("the environment's Pod has no address (yet)", code="not_running",
                           details={"status": env.status.value})
        return replace(target, address=found[0], ssh_port=found[1])

    async def record_activity(self, env_id: str) -> None:
        """Feed the idle policy; writes at most once per ``throttle_seconds`` per environment."""
        now = time.monotonic()
        last = self._last_activity.get(env_id)
        if last is not None and now - last < self.throttle_seconds:
            return
        self._last_activity[env_id] = now
        if len(self._last_activity) > 10_000:
            self._last_activity.clear()
        await self.autostop.record_activity(env_id)

    async def still_running(self, env_id: str) -> bool:
        """Whether the environment runs and is meant to: False as soon as a stop, restart
        or delete was asked for (the web terminal says why it closes)."""
        async with self.uow() as uow:
            env = await uow.environments.get(env_id)
        return env is not None and env.status is EnvStatus.RUNNING and env.desired is Desired.RUNNING
