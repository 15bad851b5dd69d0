"""One Docker bridge network per workspace (per installation scope), so that
environments of different workspaces cannot reach each other.

Docker itself drops traffic between two user-defined bridge networks (its
``DOCKER-ISOLATION`` chains), also traffic that A sends to a port B publishes on the
host's address (after DNAT it is forwarded from A's bridge to B's). Containers of one
workspace share a network and may talk to each other (inter-container traffic on):
same tenant, e.g. for distributed training.

Names: the network is ``rgpu-net-<scope>-<workspace>``; its Linux bridge interface is
``rg<5 hex of the scope><8 hex of the workspace>`` (15 characters, the kernel's limit),
so the egress rules (``egress.py``) match every bridge of one scope with the single
interface pattern ``rg<5 hex>+`` and never touch another installation's. An environment
whose spec carries no workspace (an older server) gets a network of its own.

A network is created on demand and removed when no container (running or not: a
stopped container still needs it to start) is attached any more.

Capacity: each network takes a subnet from Docker's ``default-address-pools`` (about
30 with Docker's defaults); when those are used up, a /24 of the platform's fallback
ranges (``docker_subnets.py``: 256 more by default). A host serving more workspaces at
once needs a larger pool in ``/etc/docker/daemon.json``, e.g. ``{"default-address-pools":
[{"base": "10.200.0.0/16", "size": 24}]}``, or wider fallback ranges.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from datetime import datetime, timezone
from typing import Any

from docker.errors import APIError, NotFound

from remotegpu.adapters.runtime.docker_subnets import create_network

log = logging.getLogger("remotegpu.runtime.docker_network")

LABEL_MANAGED = "remotegpu.managed"
LABEL_SCOPE = "remotegpu.scope"
LABEL_NETWORK_OF = "remotegpu.network_of"  # the workspace (or "env:<id>") the network serves
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
GRACE_SECONDS = 60.0  # a network this young is not pruned by housekeeping


def interface_prefix(scope: str) -> str:
    """The bridge-interface prefix of every network of ``scope`` (``rg`` + 5 hex)."""
    return "rg" + hashlib.sha256(scope.encode()).hexdigest()[:5]


class WorkspaceNetworks:
    """The networks of one scope on one Docker daemon. Thread-safe within a process:
    ``lock`` serialises creating a network + attaching a container against pruning."""

    def __init__(self, client: Any, scope: str) -> None:
        self._client = client
        self._scope = scope
        self.lock = threading.RLock()

    @staticmethod
    def tenant_of(workspace_id: str | None, env_id: str) -> str:
        return workspace_id if workspace_id else f"env:{env_id}"

    def name_for(self, tenant: str) -> str:
        return f"rgpu-net-{_UNSAFE.sub('-', self._scope)}-{_UNSAFE.sub('-', tenant)}"[:200]

    def bridge_for(self, tenant: str) -> str:
        return interface_prefix(self._scope) + hashlib.sha256(tenant.encode()).hexdigest()[:8]

    def ensure(self, tenant: str) -> str:
        """The name of ``tenant``'s network, created if missing. Call with ``lock`` held
        until the container that needs it exists."""
        name = self.name_for(tenant)
        with self.lock:
            if self._mine(name) is not None:
                return name
            try:
                create_network(
                    self._client, name, driver="bridge", check_duplicate=True,
                    options={
                        "com.docker.network.bridge.name": self.bridge_for(tenant),
                        "com.docker.network.bridge.enable_icc": "true",  # same tenant may talk
                        "com.docker.network.bridge.enable_ip_masquerade": "true",  # internet egress, if allowed
                    },
                    labels={LABEL_MANAGED: "true", LABEL_SCOPE: self._scope, LABEL_NETWORK_OF: tenant},
                )
            except APIError as exc:
                if exc.status_code != 409 or self._mine(name) is None:  # 409: made meanwhile elsewhere
                    raise
            log.info("network %s created", name)
            return name

    def connect_only(self, container: Any, tenant: str) -> None:
        """Attach an existing container to ``tenant``'s network and detach it from every
        other (a container made before networks were per workspace sat on Docker's
        default bridge with everybody else). Works on stopped containers too."""
        networks = dict((container.attrs.get("NetworkSettings") or {}).get("Networks") or {})
        name = self.name_for(tenant)
        if set(networks) == {name}:
            return
        with self.lock:  # no prune between making the network and attaching to it
            self.ensure(tenant)
            if name not in networks:
                self._client.networks.get(name).connect(container)
            for other in networks:
                if other != name:
                    try:
                        self._client.networks.get(other).disconnect(container, force=True)
                    except NotFound:
                        pass
        log.warning("container %s moved to network %s (was on %s)", container.name, name, ", ".join(networks) or "none")

    def list(self) -> list[Any]:
        return self._client.networks.list(filters={"label": [f"{LABEL_MANAGED}=true", f"{LABEL_SCOPE}={self._scope}"]})

    def prune(self, *, grace_seconds: float = GRACE_SECONDS) -> list[str]:
        """Remove this scope's networks that no container (of any state) uses and that are
        older than ``grace_seconds`` (another process of the scope may be about to attach
        a container to a new one: the lock is this process's only); the names removed."""
        removed = []
        with self.lock:
            for network in self.list():
                if grace_seconds > 0 and _younger_than(network, grace_seconds):
                    continue
                if self._client.containers.list(all=True, filters={"network": network.name}):
                    continue
                try:
                    network.remove()
                except NotFound:
                    continue
                except APIError as exc:  # an endpoint appeared meanwhile (another process)
                    log.info("network %s kept: %s", network.name, exc.explanation or exc)
                    continue
                removed.append(network.name)
        if removed:
            log.info("unused networks removed: %s", ", ".join(removed))
        return removed

    def _mine(self, name: str) -> Any | None:
        try:
            network = self._client.networks.get(name)
        except NotFound:
            return None
        labels = network.attrs.get("Labels") or {}
        if labels.get(LABEL_MANAGED) != "true" or labels.get(LABEL_SCOPE) != self._scope:
            raise RuntimeError(f"a network named {name} exists that this installation did not make; remove or rename it")
        return network


def _younger_than(network: Any, seconds: float) -> bool:
    """Whether Docker created ``network`` less than ``seconds`` ago (its RFC 3339
    ``Created``, nanoseconds cut); unknown counts as young."""
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?", str(network.attrs.get("Created") or ""))
    if not match:
        return True
    fraction = (match.group(2) or ".0")[1:7].ljust(6, "0")
    zone = match.group(3) or "Z"
    created = datetime.fromisoformat(f"{match.group(1)}.{fraction}{'+00:00' if zone == 'Z' else zone}")
    return (datetime.now(timezone.utc) - created).total_seconds() < seconds
