"""The platform as its registry's token issuer (Docker registry v2 token auth).

With a signing key configured (``REMOTEGPU_REGISTRY_TOKEN_KEY``) the registry is run with
``auth: token: {realm: <platform>/api/v1/registry/token, service, issuer, rootcertbundle:
<the key's certificate>}`` and holds no password at all. Then:

- **agents** get, with every heartbeat reply, a **host credential**: user name = the host's
  id, password = ``v1.<expiry>.<HMAC(server secret, host id, expiry)>``, valid
  ``credential_ttl`` seconds (default 1 h; a new one comes with each beat), derived and
  never stored. The agent hands it to its Docker engine (``docker pull``, ``docker push``)
  and to its own registry client (saves); the engine trades it at the realm for a JWT.
- **the realm** (:meth:`RegistryAccess.token`) checks the credential and grants, of the
  scopes asked, only what the host needs now:

  * ``pull`` on platform repositories (``<ns>/platform/*``) and on ``remotegpu/bases/*``
    (bases a save pushed once): any registered host, they are the platform's images;
  * ``pull`` on a workspace's repositories (``<ns>/ws-<workspace>/*``) only for a host
    that has, placed on it now, an environment (not deleted), an image job (queued or
    running), a training-job node or an inference replica of that workspace: the rule
    is per workspace, not per image (a host running one of a workspace's environments
    may pull that workspace's other images);
  * ``pull,push`` on the target repository of each image job (save/build) queued or
    running on that host, and ``pull,push`` on ``remotegpu/bases/*`` while it has a save
    (a locally built base is pushed there once).

  Anything else asked is left out of the token (the spec: an authenticated caller gets a
  token with the access it has, possibly none; the registry then refuses). Tokens live
  ``token_ttl`` seconds (default 300); the registry refuses them after that.
- **users get nothing**: the realm authenticates host credentials only (a user's token
  answers 401); users reach images through the platform's API.
- **the platform itself** (manifest reads and deletes, ``remotegpu push-base-image``)
  signs its own tokens with the key: no credential to hold at all.

Without the key the registry keeps its static credentials (htpasswd, Harbor robot
accounts): ``REMOTEGPU_REGISTRY_USERNAME``/``PASSWORD`` and the pull pair, handed to
agents as they are.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

from remotegpu.application.images.ports import ImageStore, RegistryAuth
from remotegpu.application.shared.ports import UnitOfWorkFactory
from remotegpu.domain.environments.models import EnvStatus
from remotegpu.domain.images.models import JobKind, JobStatus
from remotegpu.domain.shared.errors import Unauthenticated

CREDENTIAL_VERSION = "v1"
#: Where a save pushes a locally built base once (adapters/runtime/docker_images.py).
BASES_PREFIX = "remotegpu/bases/"
_SCOPE_RE = re.compile(r"^(?P<type>[a-z0-9]+)(?:\([a-z0-9]+\))?:(?P<name>[^:]+(?::[^:]+)*):(?P<actions>[a-z*,]*)$")


class RegistryTokenSigner(Protocol):
    """Signs registry tokens (adapters/images/registry_token.py: a JWT the registry checks
    against its ``rootcertbundle``)."""

    @property
    def service(self) -> str: ...

    def sign(self, subject: str, access: list[dict[str, Any]], ttl_seconds: int, *, now: datetime | None = None) -> str:
        """A token for ``access`` (``[{"type", "name", "actions"}]``) valid ``ttl_seconds`` from ``now``."""
        ...


class Clock(Protocol):
    def now(self) -> datetime: ...


@dataclass(frozen=True)
class Scope:
    type: str
    name: str
    actions: tuple[str, ...]

    def claim(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "actions": list(self.actions)}


@dataclass(frozen=True)
class Grant:
    token: str
    expires_in: int
    issued_at: datetime
    access: tuple[Scope, ...]


def parse_scopes(raw: list[str]) -> list[Scope]:
    """``repository:ns/ws-1/app:pull,push`` (several per parameter, space-separated, as
    the spec allows); unparseable ones are ignored."""
    out: list[Scope] = []
    for item in raw:
        for part in item.split():
            m = _SCOPE_RE.match(part)
            if m is None:
                continue
            actions = tuple(a for a in m["actions"].split(",") if a)
            out.append(Scope(m["type"], m["name"], actions))
    return out


def repository_of(reference: str, registry: str) -> str | None:
    """``host:port/ns/ws-1/app:tag`` (or ``@sha256:…``) → ``ns/ws-1/app``; None: another registry."""
    if not reference.startswith(registry + "/"):
        return None
    rest = reference[len(registry) + 1:].split("@", 1)[0]
    path, _, tag = rest.rpartition(":")
    return path if path and "/" not in tag else rest


@dataclass
class RegistryAccess:
    uow: UnitOfWorkFactory
    store: ImageStore
    clock: Clock
    signer: RegistryTokenSigner
    key: bytes  # HMAC key of host credentials (derived from the server's secret)
    registry: str  # host:port, the prefix of the registry's references
    namespace: str = "remotegpu"
    credential_ttl_seconds: int = 3600
    token_ttl_seconds: int = 300
    _cache: dict = field(default_factory=dict, repr=False)

    # --- host credentials -------------------------------------------------------------

    def _mac(self, host_id: str, expiry: int) -> str:
        return hmac.new(self.key, f"{CREDENTIAL_VERSION}|{host_id}|{expiry}".encode(), hashlib.sha256).hexdigest()

    def host_credential(self, host_id: str) -> RegistryAuth:
        """What an agent hands its engine: valid ``credential_ttl_seconds`` (rounded to
        the minute, so replies of the same minute carry the same one)."""
        now = int(self.clock.now().timestamp())
        expiry = (now + self.credential_ttl_seconds) // 60 * 60 + 60
        return RegistryAuth(self.registry, host_id, f"{CREDENTIAL_VERSION}.{expiry}.{self._mac(host_id, expiry)}")

    def _check_credential(self, username: str, password: str) -> str:
        version, _, rest = password.partition(".")
        expiry_s, _, mac = rest.partition(".")
        if version != CREDENTIAL_VERSION or not expiry_s.isdigit() or not username:
            raise Unauthenticated("registry tokens are issued to hosts' agents only", code="invalid_registry_credential")
        expiry = int(expiry_s)
        if not hmac.compare_digest(mac, self._mac(username, expiry)):
            raise Unauthenticated("registry tokens are issued to hosts' agents only", code="invalid_registry_credential")
        if expiry < self.clock.now().timestamp():
            raise Unauthenticated("this registry credential has expired", code="registry_credential_expired")
        return username

    # --- the realm --------------------------------------------------------------------

    async def token(self, username: str, password: str, service: str, scopes: list[str]) -> Grant:
        """Docker's token endpoint: a short-lived JWT for what of ``scopes`` the host may do."""
        host_id = self._check_credential(username, password)
        if service and service != self.signer.service:
            raise Unauthenticated(f"this realm issues tokens for the service {self.signer.service!r}",
                                  code="invalid_registry_service")
        allowed = await self._allowed(host_id)
        granted = []
        for scope in parse_scopes(scopes):
            if scope.type != "repository":
                continue
            may = allowed(scope.name)
            actions = tuple(a for a in scope.actions if a in may)
            if actions:
                granted.append(Scope(scope.type, scope.name, actions))
        now = self.clock.now()
        token = self.signer.sign(f"host:{host_id}", [g.claim() for g in granted], self.token_ttl_seconds, now=now)
        return Grant(token, self.token_ttl_seconds, now.astimezone(timezone.utc), tuple(granted))

    async def _allowed(self, host_id: str):
        """A function: repository → the actions this host may take on it now."""
        async with self.uow() as uow:
            host = await uow.hosts.get(host_id)
            if host is None or host.agent_token_hash is None:  # deleted, or its token revoked
                raise Unauthenticated("this host is no longer registered", code="invalid_registry_credential")
            workspaces: set[str] = {env.workspace_id for env in await uow.environments.list_for_host(host_id)
                                     if env.status is not EnvStatus.DELETED}
            training = getattr(uow, "training_jobs", None)
            if training is not None:
                from remotegpu.domain.workloads.models import JobStatus as TrainingStatus

                for job in await training.list_by_status([TrainingStatus.STARTING, TrainingStatus.RUNNING]):
                    if any(n.host_id == host_id for n in job.node_states):
                        workspaces.add(job.workspace_id)
            services = getattr(uow, "inference_services", None)
            if services is not None:
                for service in await services.list_active():
                    if any(r.host_id == host_id for r in service.replicas):
                        workspaces.add(service.workspace_id)
        pushes: set[str] = set()
        saving = False
        for job in await self.store.list_jobs(host_id=host_id, statuses=[JobStatus.QUEUED, JobStatus.RUNNING]):
            if job.workspace_id:
                workspaces.add(job.workspace_id)
            repo = repository_of(job.target, self.registry)
            if repo:
                pushes.add(repo)
            saving = saving or job.kind is JobKind.SAVE
        ns = self.namespace

        def may(repository: str) -> set[str]:
            if repository in pushes or (saving and repository.startswith(BASES_PREFIX)):
                return {"pull", "push"}
            if repository.startswith((f"{ns}/platform/", BASES_PREFIX)):
                return {"pull"}
            parts = repository.split("/")
            if len(parts) >= 3 and parts[0] == ns and parts[1].startswith("ws-") and parts[1][3:] in workspaces:
                return {"pull"}
            return set()

        return may
