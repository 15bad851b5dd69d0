"""What this server process can reach on its own machine: the embedded agent's host.

The embedded agent's host is this machine: its Jupyter ports are published on
loopback, and its Docker daemon is the one this process talks to (terminals). Other
hosts are remote: reached over the network, never through a local Docker.
"""

from __future__ import annotations

import weakref

from aiohttp import web

from remotegpu.adapters.fleet.credentials import FileCredentialStore
from remotegpu.application.environments.terminal import TerminalOpener
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


def terminal_opener(app: web.Application) -> TerminalOpener | None:
    """Docker terminals for the embedded host, or None when its runtime is not Docker."""
    state = _of(app)
    if "terminals" not in state:
        settings = app[CONTAINER].settings()
        opener = None
        if settings.embedded_agent and settings.runtime in ("auto", "docker"):
            from remotegpu.adapters.runtime.docker_runtime import docker_available

            if docker_available():
                from remotegpu.adapters.runtime.docker_terminal import DockerTerminals

                opener = DockerTerminals(scope=settings.docker_scope)
        state["terminals"] = opener
    return state["terminals"]
