"""Pick the EnvironmentRuntime an agent drives: ``REMOTEGPU_RUNTIME=auto|docker|local|memory``."""

from __future__ import annotations

from pathlib import Path

from remotegpu.application.environments.ports import EnvironmentRuntime

RUNTIME_KINDS = ("auto", "docker", "local", "memory")


def select_runtime(
    kind: str, *, data_dir: Path, docker_scope: str = "default", private_address: str = "127.0.0.1",
) -> tuple[EnvironmentRuntime, str]:
    """(runtime, its name as the agent reports it: "docker" | "local" | "memory").

    ``auto`` is Docker when a daemon answers, else local processes (dev only) whose
    sandboxes live in ``data_dir / "local-runtime"``. ``docker`` without a daemon, or an
    unknown kind, raises ``ValueError`` with what to do about it. Docker publishes
    private ports (Jupyter) on ``private_address`` only.
    """
    kind = (kind or "auto").strip().lower()
    if kind not in RUNTIME_KINDS:
        raise ValueError(f"unknown runtime {kind!r}: choose one of {', '.join(RUNTIME_KINDS)}")
    if kind == "memory":
        from remotegpu.adapters.runtime.memory import InMemoryRuntime

        return InMemoryRuntime(), "memory"
    if kind in ("auto", "docker"):
        from remotegpu.adapters.runtime.docker_runtime import DockerRuntime, docker_available

        if docker_available():
            return DockerRuntime(scope=docker_scope, private_bind_address=private_address or "127.0.0.1"), "docker"
        if kind == "docker":
            raise ValueError(
                "runtime 'docker' asked for, but no Docker daemon answers (check DOCKER_HOST, the socket's "
                "permissions, or use --runtime local for development)"
            )
    from remotegpu.adapters.runtime.local_process import LocalProcessRuntime

    return LocalProcessRuntime(Path(data_dir) / "local-runtime"), "local"
