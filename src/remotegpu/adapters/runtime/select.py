"""Pick the EnvironmentRuntime an agent drives: ``REMOTEGPU_RUNTIME=auto|docker|local|memory|kubernetes``.

``auto`` means Docker. There is no silent fallback to local processes: they give users
code execution on this machine as the server's user, so they run only when asked for by
name (single-user development).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from remotegpu.application.environments.ports import EnvironmentRuntime

RUNTIME_KINDS = ("auto", "docker", "local", "memory", "kubernetes")

NO_DOCKER = (
    "no Docker daemon answers (DOCKER_HOST, or /var/run/docker.sock: is dockerd running, may this user use "
    "it?). Environments run in Docker: install it (https://docs.docker.com/engine/install/) and start it. "
    "For single-user development without Docker, set REMOTEGPU_RUNTIME=local explicitly: environments are "
    "then plain processes on this machine, running as you, not isolated"
)


def runtime_problem(kind: str) -> str | None:
    """Why ``kind`` cannot run here (a sentence saying what to do), or None. For start-up
    checks that should fail before anything else starts."""
    kind = (kind or "auto").strip().lower()
    if kind not in RUNTIME_KINDS:
        return f"unknown runtime {kind!r}: choose one of {', '.join(RUNTIME_KINDS)}"
    if kind in ("auto", "docker"):
        from remotegpu.adapters.runtime.docker_runtime import docker_available

        if not docker_available():
            return f"runtime {kind!r} needs Docker, but {NO_DOCKER}"
    return None


def select_runtime(
    kind: str, *, data_dir: Path, docker_scope: str = "default", private_address: str = "127.0.0.1",
    environ: Mapping[str, str] | None = None,
) -> tuple[EnvironmentRuntime, str]:
    """(runtime, its name as the agent reports it: "docker" | "local" | "memory").

    ``auto`` and ``docker`` are Docker; without a daemon they raise ``ValueError`` saying
    what to install. ``local`` runs local processes (dev only) whose sandboxes live in
    ``data_dir / "local-runtime"``. Docker publishes private ports (Jupyter) on
    ``private_address`` only, and is confined as ``environ`` says (``REMOTEGPU_PIDS_LIMIT``,
    ``REMOTEGPU_EGRESS_DENY``, ``REMOTEGPU_EGRESS_INTERNET``; default: this process's
    environment); a bad value raises ``ValueError`` naming the key.
    """
    kind = (kind or "auto").strip().lower()
    if kind not in RUNTIME_KINDS:
        raise ValueError(f"unknown runtime {kind!r}: choose one of {', '.join(RUNTIME_KINDS)}")
    if kind == "memory":
        from remotegpu.adapters.runtime.memory import InMemoryRuntime

        return InMemoryRuntime(), "memory"
    if kind == "local":
        from remotegpu.adapters.runtime.local_process import LocalProcessRuntime

        return LocalProcessRuntime(Path(data_dir) / "local-runtime"), "local"
    if kind == "kubernetes":
        return kubernetes_runtime(docker_scope, os.environ if environ is None else environ), "kubernetes"
    problem = runtime_problem(kind)
    if problem is not None:
        raise ValueError(problem)
    return docker_runtime(docker_scope, private_address, os.environ if environ is None else environ, data_dir=data_dir), "docker"


def docker_runtime(scope: str, private_address: str, environ: Mapping[str, str], *, data_dir: Path | None = None) -> EnvironmentRuntime:
    """The agent's DockerRuntime: hardened containers, workspace networks, egress rules, and
    workspace shared disks of enforced size, their images in ``REMOTEGPU_SHARED_DISK_DIR``
    (default ``data_dir/shared-disks``)."""
    from remotegpu.adapters.runtime.docker_hardening import DEFAULT_PIDS_LIMIT, Hardening
    from remotegpu.adapters.runtime.docker_network import interface_prefix
    from remotegpu.adapters.runtime.docker_runtime import DockerRuntime
    from remotegpu.adapters.runtime.egress import EgressPolicy, EgressRules

    raw_limit = environ.get("REMOTEGPU_PIDS_LIMIT", "").strip() or str(DEFAULT_PIDS_LIMIT)
    try:
        hardening = Hardening(pids_limit=int(raw_limit))
    except ValueError as exc:
        raise ValueError(f"REMOTEGPU_PIDS_LIMIT: {exc} (got {raw_limit!r})") from None
    policy = EgressPolicy.parse(environ.get("REMOTEGPU_EGRESS_DENY", ""), environ.get("REMOTEGPU_EGRESS_INTERNET", "true"))
    egress = EgressRules(scope, interface_prefix(scope), policy)
    from remotegpu.adapters.runtime.shared_disks import LoopDisks

    disk_dir = environ.get("REMOTEGPU_SHARED_DISK_DIR", "").strip() or (str(Path(data_dir) / "shared-disks") if data_dir else "")
    return DockerRuntime(scope=scope, private_bind_address=private_address or "127.0.0.1",
                         hardening=hardening, egress=egress, shared_disks=LoopDisks(Path(disk_dir)) if disk_dir else None)


def kubernetes_runtime(scope: str, environ: Mapping[str, str]) -> EnvironmentRuntime:
    """The KubernetesRuntime configured by ``REMOTEGPU_KUBE*`` (see the README's table):
    ``REMOTEGPU_KUBECONFIG`` (a path; empty: the in-cluster service account),
    ``REMOTEGPU_KUBE_NAMESPACE``, ``REMOTEGPU_KUBE_STORAGE_CLASS``, ``REMOTEGPU_KUBE_SERVICE_TYPE``,
    ``REMOTEGPU_KUBE_IMAGE_PULL_SECRET``, ``REMOTEGPU_KUBE_RUNTIME_CLASS``, ``REMOTEGPU_KUBE_GPU_RESOURCE``,
    ``REMOTEGPU_KUBE_START_TIMEOUT_SECONDS``, ``REMOTEGPU_KUBE_MOUNT_IMAGE``, ``REMOTEGPU_KUBE_PLATFORM_URL``,
    ``REMOTEGPU_KUBE_NETWORK_POLICY`` (``false``: none), ``REMOTEGPU_KUBE_PLATFORM_PODS`` and
    ``REMOTEGPU_KUBE_PLATFORM_NAMESPACES`` (``k=v,k=v``: the servers' Pod and namespace labels the
    NetworkPolicies admit). The installation's scope labels every object."""
    from remotegpu.adapters.runtime.kubernetes_runtime import KubernetesRuntime, load_api_client

    def get(key: str, default: str = "") -> str:
        return (environ.get(key) or default).strip()

    try:
        timeout = float(get("REMOTEGPU_KUBE_START_TIMEOUT_SECONDS", "60"))
    except ValueError:
        raise ValueError(f"REMOTEGPU_KUBE_START_TIMEOUT_SECONDS: not a number: {get('REMOTEGPU_KUBE_START_TIMEOUT_SECONDS')!r}") from None
    try:
        api = load_api_client(get("REMOTEGPU_KUBECONFIG") or None)
    except Exception as exc:  # noqa: BLE001 - no kubeconfig, not in a cluster
        raise ValueError(f"runtime 'kubernetes': cannot load REMOTEGPU_KUBECONFIG or the in-cluster service account: {exc}") from None
    return KubernetesRuntime(
        api, namespace=get("REMOTEGPU_KUBE_NAMESPACE", "remotegpu"), scope=scope,
        storage_class=get("REMOTEGPU_KUBE_STORAGE_CLASS") or None, service_type=get("REMOTEGPU_KUBE_SERVICE_TYPE", "NodePort"),
        image_pull_secret=get("REMOTEGPU_KUBE_IMAGE_PULL_SECRET") or None,
        runtime_class=get("REMOTEGPU_KUBE_RUNTIME_CLASS") or None,
        gpu_resource=get("REMOTEGPU_KUBE_GPU_RESOURCE", "nvidia.com/gpu"), start_timeout=timeout,
        mount_image=get("REMOTEGPU_KUBE_MOUNT_IMAGE") or None, platform_url=get("REMOTEGPU_KUBE_PLATFORM_URL") or None,
        network_policy=get("REMOTEGPU_KUBE_NETWORK_POLICY", "true").lower() not in ("0", "false", "no", "off"),
        platform_pods=_label_map("REMOTEGPU_KUBE_PLATFORM_PODS", get("REMOTEGPU_KUBE_PLATFORM_PODS")),
        platform_namespaces=_label_map("REMOTEGPU_KUBE_PLATFORM_NAMESPACES", get("REMOTEGPU_KUBE_PLATFORM_NAMESPACES")),
    )


def _label_map(name: str, value: str) -> dict[str, str] | None:
    """``k=v,k=v`` as a dict (None when empty: the runtime's default)."""
    if not value:
        return None
    out = {}
    for part in value.split(","):
        key, sep, val = part.strip().partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{name}: expected k=v,k=v, not {value!r}")
        out[key.strip()] = val.strip()
    return out
