"""What this server process can reach on its own machine: the embedded agent's host.

The embedded agent's host is this machine: its Docker daemon is the one this process
talks to (terminals by ``docker exec``). Other hosts are remote: reached over their
private address (Jupyter, SSH for the terminal), never through a local Docker.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from aiohttp import web

from remotegpu.adapters.fleet.credentials import FileCredentialStore
from remotegpu.application.environments.terminal import TerminalOpener, TerminalRouter
from remotegpu.entrypoints.http.keys import CONTAINER

_state: "weakref.WeakKeyDictionary[web.Application, dict]" = weakref.WeakKeyDictionary()


def _of(app: web.Application) -> dict:
    return _state.setdefault(app, {})


def local_host_id(app: web.Application) -> str | None:
    """The host id the embedded agent registered as (None without an embedded agent)."""
    state = _of(app)
    if state.get("host_id") is None:
        settings = app[CONTAINER].settings()
        if settings.embedded_agent:
            saved = FileCredentialStore(settings.data_dir / "agent").load()
            state["host_id"] = saved[0] if saved else None
    return state.get("host_id")


def _memo(app: web.Application, key: str, make: Callable[[], Any]) -> Any:
    """``make()`` once per app, kept under ``key``."""
    state = _of(app)
    if key not in state:
        state[key] = make()
    return state[key]


def terminal_router(app: web.Application) -> TerminalRouter:
    """The web terminal's opener: docker exec for the embedded host's environments (when
    its runtime is Docker), an SSH session with each environment's own keys for all others."""

    def make() -> TerminalRouter:
        from remotegpu.adapters.access.ssh_terminal import SshTerminals

        return TerminalRouter(
            local_host_id=lambda: local_host_id(app), local=terminal_opener(app),
            ssh=SshTerminals(),
        )

    return _memo(app, "router", make)


def _embedded_docker(app: web.Application) -> str | None:
    """The embedded host's Docker scope when this server's embedded agent runs on a
    Docker that answers (asked once per app), else None."""

    def make() -> str | None:
        settings = app[CONTAINER].settings()
        if settings.embedded_agent and settings.runtime in ("auto", "docker"):
            from remotegpu.adapters.runtime.docker_runtime import docker_available

            if docker_available():
                return settings.effective_docker_scope()
        return None

    return _memo(app, "docker_scope", make)


def terminal_opener(app: web.Application) -> TerminalOpener | None:
    """Docker terminals for the embedded host, or None when its runtime is not Docker."""

    def make() -> TerminalOpener | None:
        scope = _embedded_docker(app)
        if scope is None:
            return None
        from remotegpu.adapters.runtime.docker_terminal import DockerTerminals

        return DockerTerminals(scope=scope)

    return _memo(app, "terminals", make)


def kube_app_endpoints(app: web.Application):
    """Where environments on a Kubernetes host listen (their Pods' IPs; see
    adapters/runtime/kube_apps.py), through this server's REMOTEGPU_KUBECONFIG or the
    in-cluster service account; None when neither reaches a cluster (asked once per app)."""

    def make():
        return app[CONTAINER].kube_pods().get()  # shared with the web terminal and the SSH gateway

    return _memo(app, "kube_apps", make)


def local_docker_runtime(app: web.Application):
    """The embedded host's DockerRuntime (for lookups such as a container's IP), or None
    when this server has no embedded agent on Docker."""

    def make():
        scope = _embedded_docker(app)
        if scope is None:
            return None
        from remotegpu.adapters.runtime.docker_runtime import DockerRuntime

        return DockerRuntime(scope=scope)

    return _memo(app, "docker_runtime", make)
