"""Embedded mode: this machine is a GPU host, its agent runs inside the server process.

The agent is the same ``HostAgent`` that ``remotegpu agent`` runs; only its link to
the server is a direct call instead of HTTP. On first start it creates the host
record for this machine and registers with the join token, like a remote agent.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from contextlib import suppress
from typing import AsyncIterator

from remotegpu.adapters.fleet.credentials import FileCredentialStore
from remotegpu.adapters.fleet.fake_probe import detect_probe
from remotegpu.adapters.fleet.system_info import HostSystemInfo
from remotegpu.adapters.runtime.select import select_runtime
from remotegpu.application.fleet.agent import HostAgent
from remotegpu.application.monitoring.collector import MetricsCollector, container_sources
from remotegpu.application.fleet.agent_protocol import HeartbeatReply, HostReport
from remotegpu.application.fleet.agent_service import AgentService
from remotegpu.application.fleet.ports import AgentTokenRejected
from remotegpu.domain.shared.errors import Conflict, Unauthenticated
from remotegpu.entrypoints.containers import Container

log = logging.getLogger("remotegpu.embedded_agent")


class InProcessAgentLink:
    def __init__(self, service: AgentService, metrics=None):
        self._service = service
        self._metrics = metrics  # MetricsService: samples go straight to it

    async def send_metrics(self, agent_token: str, rows: list) -> int:
        if self._metrics is None:
            return 0
        try:
            return await self._metrics.ingest_from_agent(agent_token, rows)
        except Unauthenticated as exc:
            raise AgentTokenRejected(exc.message, status=401, code=exc.code) from None

    async def register(self, join_token: str, name: str, report: HostReport) -> tuple[str, str]:
        return await self._service.register(join_token, name, report)

    async def heartbeat(self, agent_token: str, report: HostReport) -> HeartbeatReply:
        try:
            return await self._service.heartbeat(agent_token, report)
        except Unauthenticated as exc:  # what HttpAgentLink raises for a 401, so the agent re-registers
            raise AgentTokenRejected(exc.message, status=401, code=exc.code) from None

    async def wait_for_work(self, agent_token: str, known: dict[str, tuple[str, int]], timeout: float) -> bool:
        try:
            return await self._service.wait_for_work(agent_token, known, timeout)
        except Unauthenticated as exc:
            raise AgentTokenRejected(exc.message, status=401, code=exc.code) from None


async def build_embedded_agent(container: Container) -> HostAgent:
    settings = container.settings()
    name = settings.agent_name or socket.gethostname()
    state_dir = settings.data_dir / "agent"
    credentials = FileCredentialStore(state_dir)
    join_token = None
    if credentials.load() is None:
        join_token = await _new_join_token(container, name)
    private_address = settings.agent_private_address.strip() or "127.0.0.1"
    runtime, runtime_name = select_runtime(
        settings.runtime, data_dir=settings.data_dir, docker_scope=settings.effective_docker_scope(), private_address=private_address,
        environ={"REMOTEGPU_PIDS_LIMIT": str(settings.pids_limit), "REMOTEGPU_EGRESS_DENY": settings.egress_deny,
                 "REMOTEGPU_EGRESS_INTERNET": str(settings.egress_internet).lower(),
                 "REMOTEGPU_KUBECONFIG": settings.kubeconfig, "REMOTEGPU_KUBE_NAMESPACE": settings.kube_namespace,
                 "REMOTEGPU_KUBE_STORAGE_CLASS": settings.kube_storage_class,
                 "REMOTEGPU_KUBE_SERVICE_TYPE": settings.kube_service_type,
                 "REMOTEGPU_KUBE_IMAGE_PULL_SECRET": settings.kube_image_pull_secret,
                 "REMOTEGPU_KUBE_RUNTIME_CLASS": settings.kube_runtime_class,
                 "REMOTEGPU_KUBE_GPU_RESOURCE": settings.kube_gpu_resource,
                 "REMOTEGPU_KUBE_START_TIMEOUT_SECONDS": str(settings.kube_start_timeout_seconds),
                 "REMOTEGPU_KUBE_MOUNT_IMAGE": settings.kube_mount_image,
                 "REMOTEGPU_KUBE_PLATFORM_URL": settings.kube_platform_url},
    )
    from remotegpu.adapters.workloads.select import select_job_runtime

    jobs = select_job_runtime(runtime_name, state_dir=state_dir, docker_scope=settings.effective_docker_scope(),
                              pids_limit=settings.pids_limit, private_address=private_address)
    address = settings.ssh_host or (settings.http_host if settings.http_host not in ("0.0.0.0", "::") else "127.0.0.1")
    from remotegpu.adapters.storage.mount_cache import DataMountMaterializer, MountCache
    from remotegpu.adapters.storage.mount_sources import InProcessVersionSource
    from remotegpu.adapters.workloads.output_sinks import InProcessJobOutputSink

    mounts = DataMountMaterializer(
        MountCache(state_dir / "storage-cache", int(settings.storage_cache_gib * 1024**3)),
        InProcessVersionSource(container.agent_service(), container.storage_mounts()),
    )
    probe = detect_probe(settings.agent_fake_gpus, seed=name, control_file=settings.agent_fake_gpu_control or None)
    if runtime_name == "kubernetes" and not (settings.agent_fake_gpus or "").strip():
        from remotegpu.adapters.runtime.kube_nodes import KubernetesGpuProbe

        probe = KubernetesGpuProbe(runtime._api, gpu_resource=settings.kube_gpu_resource,  # the cluster's nodes' GPUs
                                   allocated=runtime.gpus_by_node)
    collector = MetricsCollector(probe if hasattr(probe, "telemetry") else None,
                                 container_sources(runtime, jobs),  # environments' containers and job nodes'
                                 interval_seconds=settings.metrics_interval_seconds)
    return HostAgent(
        runtime, probe, InProcessAgentLink(container.agent_service(), container.metrics_service()),
        HostSystemInfo(settings.data_dir), name=name, join_token=join_token, credentials=credentials,
        address=address, private_address=private_address, runtime_name=runtime_name, data_mounts=mounts,
        collector=collector, training_nodes=jobs,
        job_outputs=InProcessJobOutputSink(container.job_output_receiver()),
    )


async def _new_join_token(container: Container, name: str) -> str:
    hosts = container.host_service()
    for suffix in ["", *[f"-{i}" for i in range(2, 20)]]:
        try:
            _, token = await hosts.add(None, name + suffix)
            return token
        except Conflict:
            continue  # a record of that name exists from an earlier data dir's agent
    raise RuntimeError("could not create a host record for the embedded agent")


def embedded_agent_ctx(container: Container):
    """aiohttp cleanup_ctx: run the in-process agent and the periodic sweeps."""

    async def ctx(app) -> AsyncIterator[None]:
        stop = asyncio.Event()
        agent = await build_embedded_agent(container)
        tasks = [asyncio.create_task(agent.run_forever(stop), name="embedded-agent")]
        log.info("embedded agent started", extra={"runtime": agent.runtime.__class__.__name__})
        yield
        stop.set()
        for t in tasks:
            t.cancel()
            with suppress(asyncio.CancelledError, Exception):
                await t
        if (close := getattr(agent.runtime, "close", None)) is not None:  # unused networks, firewall rules
            with suppress(Exception):
                await close()

    return ctx


def sweeper_ctx(container: Container):
    """Offline hosts and auto-stop, every few seconds (embedded mode and every server)."""

    async def ctx(app) -> AsyncIterator[None]:
        interval = container.settings().sweep_interval_seconds

        async def loop() -> None:
            sweeps = 0
            while True:
                await asyncio.sleep(interval)
                sweeps += 1
                try:
                    await container.agent_service().mark_offline_hosts()
                    await container.agent_service().finish_stranded()
                    await container.autostop().sweep()
                    if sweeps % max(1, int(60 / interval)) == 0:  # about once a minute
                        await container.delivery_service().send_due()  # emails held by quiet hours, lost jobs
                except Exception:  # noqa: BLE001 - a bad sweep must not end the loop
                    log.exception("sweep failed")

        task = asyncio.create_task(loop(), name="sweeper")
        yield
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task

    return ctx
