"""What this server process can reach on its own machine: the embedded agent's host.

The embedded agent's host is this machine: its Docker daemon is the one this process
talks to (terminals by ``docker exec``). Other hosts are remote: reached over their
private address (Jupyter, SSH for the terminal), never through a local Docker.
"""

from __future__ import annotations

import weakref

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


def terminal_router(app: web.Application) -> TerminalRouter:
    """The web terminal's opener: docker exec for the embedded host's environments (when
    its runtime is Docker), an SSH session with the platform's key for all others."""
    state = _of(app)
    if "router" not in state:
        from remotegpu.adapters.access.ssh_terminal import SshTerminals

        state["router"] = TerminalRouter(
            local_host_id=lambda: local_host_id(app), local=terminal_opener(app),
            ssh=SshTerminals(app[CONTAINER].platform_ssh_key()),
        )
    return state["router"]


def _embedded_docker(app: web.Application) -> str | None:
    """The embedded host's Docker scope when this server's embedded agent runs on a
    Docker that answers (asked once per app), else None."""
    state = _of(app)
    if "docker_scope" not in state:
        settings = app[CONTAINER].settings()
        scope = None
        if settings.embedded_agent and settings.runtime in ("auto", "docker"):
            from remotegpu.adapters.runtime.docker_runtime import docker_available

            if docker_available():
                scope = settings.docker_scope
        state["docker_scope"] = scope
    return state["docker_scope"]


def terminal_opener(app: web.Application) -> TerminalOpener | None:
    """Docker terminals for the embedded host, or None when its runtime is not Docker."""
    state = _of(app)
    if "terminals" not in state:
        scope = _embedded_docker(app)
        if scope is None:
            state["terminals"] = None
        else:
            from remotegpu.adapters.runtime.docker_terminal import DockerTerminals

            state["terminals"] = DockerTerminals(scope=scope)
    return state["terminals"]


def local_docker_runtime(app: web.Application):
    """The embedded host's DockerRuntime (for lookups such as a container's IP), or None
    when this server has no embedded agent on Docker."""
    state = _of(app)
    if "docker_runtime" not in state:
        scope = _embedded_docker(app)
        if scope is None:
            state["docker_runtime"] = None
        else:
            from remotegpu.adapters.runtime.docker_runtime import DockerRuntime

            state["docker_runtime"] = DockerRuntime(scope=scope)
    return state["docker_runtime"]
