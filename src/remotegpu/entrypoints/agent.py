"""``remotegpu agent``: the host agent on a GPU machine, talking to the server over HTTP.

    remotegpu agent --server https://gpu.example.com --token <join token>

The first start trades the join token for an agent token kept in the state directory;
later starts reuse it (the join token is one-time, passing it again is harmless). After
an admin rotated the host's token (``POST /api/v1/hosts/{id}/token``), start it with the
new join token: the saved agent token is refused, and the agent registers again with the
new one as the same host, keeping its environments.
Runs until SIGTERM/SIGINT. Environments keep running when the agent stops.

On a host other than the server's own machine, also pass ``--private-address`` (or
``REMOTEGPU_AGENT_PRIVATE_ADDRESS``): the host's address on a network only the
platform's servers reach (a private VLAN, a VPN). JupyterLab is published there only,
and the server's proxy and web terminal connect to it; ``--address`` stays the public
address users SSH to. The default, ``127.0.0.1``, works only when the server runs on
this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from pathlib import Path

DEFAULT_STATE_DIR = Path("/var/lib/remotegpu-agent")
#: Private services (Jupyter) are published here unless --private-address says otherwise:
#: right for an agent on the server's machine; a remote host needs its private-network address.
DEFAULT_PRIVATE_ADDRESS = "127.0.0.1"

log = logging.getLogger("remotegpu.agent")


def default_state_dir() -> Path:
    data_dir = os.environ.get("REMOTEGPU_DATA_DIR", "").strip()
    return Path(data_dir) / "agent" if data_dir else DEFAULT_STATE_DIR


def add_agent_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", required=True, help="the server's URL, e.g. https://gpu.example.com")
    p.add_argument("--token", help="the host's one-time join token: needed until the agent has registered, and after an "
                                   "admin rotated the host's token (the agent then registers again as the same host)")
    p.add_argument("--name", help="host name to register (default: this machine's hostname)")
    p.add_argument("--state-dir", type=Path,
                   help=f"where the agent keeps its token and local sandboxes (default: $REMOTEGPU_DATA_DIR/agent or {DEFAULT_STATE_DIR})")
    p.add_argument("--runtime", choices=["auto", "docker", "local", "memory", "kubernetes"],
                   help="default: $REMOTEGPU_RUNTIME or auto (= docker; local: single-user development only, never a fallback)")
    p.add_argument("--fake-gpus", help='fake inventory like "4xNVIDIA A100-SXM4-80GB" (default: $REMOTEGPU_AGENT_FAKE_GPUS)')
    p.add_argument("--address", default="", help="address users reach this host's published ports at (SSH)")
    p.add_argument("--private-address", default=None,
                   help="address on which the platform, and only it, reaches this host's private services "
                        "(JupyterLab behind the platform's proxy, SSH for the web terminal): set it to this "
                        "host's private-network address; Jupyter is published there only "
                        "(default: $REMOTEGPU_AGENT_PRIVATE_ADDRESS or 127.0.0.1, right only when the server "
                        "runs on this machine)")
    p.add_argument("--metrics-interval", type=float, default=None,
                   help="seconds between metric readings (GPUs, containers), at least 1 "
                        "(default: $REMOTEGPU_METRICS_INTERVAL_SECONDS or 10)")
    p.add_argument("--docker-scope", default=None,
                   help="label scope of the containers this agent manages (default: $REMOTEGPU_DOCKER_SCOPE, else "
                        "an installation id generated once in the state directory): it only ever touches its own")
    p.add_argument("--storage-cache-gib", type=float, default=float(os.environ.get("REMOTEGPU_AGENT_STORAGE_CACHE_GIB", "100")),
                   help="size of the host's cache of mounted dataset/model versions (least recently used go first; "
                        "never what a running environment mounts). Default: $REMOTEGPU_AGENT_STORAGE_CACHE_GIB or 100")


def cmd_agent(args: argparse.Namespace) -> int:
    from remotegpu import __version__
    from remotegpu.adapters.fleet.credentials import FileCredentialStore
    from remotegpu.adapters.fleet.fake_probe import detect_probe
    from remotegpu.adapters.fleet.http_link import HttpAgentLink
    from remotegpu.adapters.fleet.system_info import HostSystemInfo
    from remotegpu.adapters.runtime.select import select_runtime
    from remotegpu.application.fleet.agent import HostAgent
    from remotegpu.domain.shared.errors import DomainError
    from remotegpu.entrypoints.logging_setup import configure_logging

    name = (getattr(args, "name", None) or socket.gethostname()).strip()
    state_dir = Path(getattr(args, "state_dir", None) or default_state_dir())
    fake_spec = getattr(args, "fake_gpus", None)
    if fake_spec is None:
        fake_spec = os.environ.get("REMOTEGPU_AGENT_FAKE_GPUS") or None
    kind = getattr(args, "runtime", None) or os.environ.get("REMOTEGPU_RUNTIME", "auto")
    private_address = (getattr(args, "private_address", None) or os.environ.get("REMOTEGPU_AGENT_PRIVATE_ADDRESS", "")
                       ).strip() or DEFAULT_PRIVATE_ADDRESS

    def fail(message: str) -> int:
        print(f"remotegpu agent: {message}", file=sys.stderr)
        return 2

    try:
        HttpAgentLink(args.server)  # validates the URL; opens nothing yet
    except ValueError as exc:
        return fail(str(exc))
    credentials = FileCredentialStore(state_dir)
    if credentials.load() is None and not args.token:
        return fail(f"not registered yet (no token in {credentials.path}): pass --token with the host's join token")
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        return fail(f"cannot create the state directory {state_dir}: {exc} (choose one with --state-dir)")
    try:
        probe = detect_probe(fake_spec, seed=name,
                             control_file=os.environ.get("REMOTEGPU_AGENT_FAKE_GPU_CONTROL") or None)
    except DomainError as exc:
        return fail(exc.message)
    try:
        from remotegpu.entrypoints.installation import installation_id

        scope = (getattr(args, "docker_scope", None) or os.environ.get("REMOTEGPU_DOCKER_SCOPE", "")).strip() or \
            installation_id(state_dir, legacy_marker=credentials.path)
        runtime, runtime_name = select_runtime(
            kind, data_dir=state_dir, docker_scope=scope, private_address=private_address,
        )
        from remotegpu.adapters.workloads.select import select_job_runtime

        jobs = select_job_runtime(runtime_name, state_dir=state_dir, docker_scope=scope, private_address=private_address)
    except ValueError as exc:
        return fail(str(exc))
    if runtime_name == "kubernetes" and not fake_spec:
        from remotegpu.adapters.runtime.kube_nodes import KubernetesGpuProbe

        probe = KubernetesGpuProbe(runtime._api, gpu_resource=os.environ.get("REMOTEGPU_KUBE_GPU_RESOURCE") or "nvidia.com/gpu",
                                   allocated=runtime.gpus_by_node)

    try:
        interval = float(getattr(args, "metrics_interval", None) or os.environ.get("REMOTEGPU_METRICS_INTERVAL_SECONDS") or 10)
        from remotegpu.application.monitoring.collector import MetricsCollector, container_sources

        collector = MetricsCollector(probe if hasattr(probe, "telemetry") else None,
                                     container_sources(runtime, jobs), interval_seconds=interval)
    except ValueError as exc:
        return fail(f"--metrics-interval: {exc}")

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with HttpAgentLink(args.server) as link:
            from remotegpu.adapters.storage.mount_cache import DataMountMaterializer, MountCache
            from remotegpu.adapters.storage.mount_sources import HttpVersionSource
            from remotegpu.adapters.workloads.output_sinks import HttpJobOutputSink

            versions = HttpVersionSource(args.server)
            mounts = DataMountMaterializer(
                MountCache(state_dir / "storage-cache", int(getattr(args, "storage_cache_gib", 100) * 1024**3)), versions)
            agent = HostAgent(
                runtime, probe, link, HostSystemInfo(state_dir), name=name, join_token=args.token,
                credentials=credentials, address=args.address or "", private_address=private_address,
                runtime_name=runtime_name,
                fake_gpus=bool(fake_spec and fake_spec.strip()), agent_version=__version__, data_mounts=mounts,
                collector=collector, training_nodes=jobs, job_outputs=HttpJobOutputSink(args.server),
            )
            log.info("agent %s starting: server %s, runtime %s, %d GPU(s)%s", name, args.server, runtime_name,
                     len(probe.inventory()), " (fake)" if fake_spec else "")
            await agent.run_forever(stop)
        if (close := getattr(runtime, "close", None)) is not None:  # unused networks, firewall rules
            await close()
        log.info("agent %s stopped", name)

    configure_logging(os.environ.get("REMOTEGPU_LOG_LEVEL", "INFO").upper(), os.environ.get("REMOTEGPU_LOG_FORMAT", "json"))
    asyncio.run(run())
    return 0
