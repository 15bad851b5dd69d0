"""JobRuntime on Docker: one container per node, one network per job.

* Container ``rgpu-job-<node id>`` (node id = ``<job>.a<attempt>.n<rank>``), labelled
  ``remotegpu.job_node`` and ``remotegpu.job_scope`` (never ``remotegpu.managed``: the
  environments' runtime must not take it for an environment). Hardened like an
  environment (capabilities dropped, no-new-privileges, PID limit, no swap, CPU and
  memory limits, GPUs by allocation only). It runs the job's command once; a retry is
  a new attempt, i.e. new containers.
* Network ``rgpu-job-<job id>``, a bridge made for the job: the job's nodes, and only
  they, are on it (no environment, no other job: Docker drops traffic between
  bridges), each under the DNS alias ``node-<rank>``; ``MASTER_ADDR`` is ``node-0``.
  Every agent on the same Docker engine joins the same network (its name does not
  depend on the agent's scope), so the two agents of the integration test — or any
  nodes of one job placed on one machine — reach each other. Across machines the
  job network must span hosts: a Docker swarm ``overlay`` network created
  ``--attachable`` under the same name (``docker network create -d overlay
  --attachable rgpu-job-<id>`` by an operator hook), or host networking on a private
  job VLAN with ``MASTER_ADDR`` the private address of rank 0's host; neither is
  automated yet (see the README). The bridge interface is named after the agent's
  scope (``rg<5 hex>j…``), so the agent's egress rules (host addresses, metadata,
  ``REMOTEGPU_EGRESS_DENY``) cover job containers as they cover environments.
* The hostfile reaches ``/etc/remotegpu/hostfile`` through the entrypoint (a variable
  the platform owns, unset before the command runs).
* Logs: a follower thread per container copies ``docker logs --follow`` (stdout and
  stderr as Docker interleaved them) into ``<log dir>/<node id>.log``; a restarted
  agent copies from the beginning again (the same bytes), so offsets stay valid.
* Inference replicas use the same machinery: the network is the service's
  (``rgpu-job-svc-<id>``), the service's port is published on the agent's private
  address, and the network outlives a scale to zero (dropped when the service is
  deleted, or after an hour unused).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

import docker
from docker.errors import APIError, ImageNotFound, NotFound

from remotegpu.adapters.runtime.docker_hardening import Hardening, container_limits, gpu_environment, has_nvidia_runtime, user_environment
from remotegpu.adapters.runtime.docker_network import _younger_than, interface_prefix
from remotegpu.adapters.runtime.docker_subnets import create_network
from remotegpu.application.environments.ports import RuntimeSpec
from remotegpu.application.workloads.ports import LABEL_JOB_ID, LABEL_JOB_NODE, JobNodeSpec, JobNodeState
from remotegpu.domain.workloads.models import HOSTFILE_PATH

log = logging.getLogger("remotegpu.runtime.docker_jobs")

LABEL_JOB_SCOPE = "remotegpu.job_scope"
LABEL_JOB_NETWORK = "remotegpu.job_network"
_NODE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,120}$")
HOSTFILE_VARIABLE = "REMOTEGPU_HOSTFILE_CONTENT"
#: A service's network kept this long without replicas (its creation time, strictly).
SERVICE_NETWORK_IDLE_SECONDS = 3600.0
#: After making a job's network, how long to wait before looking for a twin another agent made.
NETWORK_SETTLE_SECONDS = 0.3
_ENTRYPOINT = [
    "/bin/sh", "-c",
    f'mkdir -p "$(dirname {HOSTFILE_PATH})" 2>/dev/null && printf "%s" "${HOSTFILE_VARIABLE}" > {HOSTFILE_PATH} 2>/dev/null; '
    f'unset {HOSTFILE_VARIABLE}; exec "$@"',
    "remotegpu-job",
]


def container_name(node_id: str) -> str:
    return f"rgpu-job-{node_id}"


def network_name(job_id: str) -> str:
    return f"rgpu-job-{job_id}"


class DockerJobRuntime:
    def __init__(self, log_dir: Path, client: docker.DockerClient | None = None, *, scope: str = "default",
                 hardening: Hardening | None = None, stop_timeout: int = 5, pull_missing: bool = True,
                 private_address: str = "127.0.0.1") -> None:
        self._client = client or docker.from_env()
        self._private_address = private_address or "127.0.0.1"
        self._scope = scope
        self._log_dir = Path(log_dir)
        self._hardening = hardening or Hardening()
        self._stop_timeout = stop_timeout
        self._pull_missing = pull_missing
        self._followers: dict[str, threading.Thread] = {}
        self._pruned_at = float("-inf")
        self._lock = threading.Lock()
        self._nvidia: bool | None = None

    # --- port ---------------------------------------------------------------------------
    async def ensure_running(self, spec: JobNodeSpec) -> None:
        _check(spec.node_id)
        await asyncio.to_thread(self._ensure_running, spec)

    async def stop(self, node_id: str) -> None:
        _check(node_id)
        await asyncio.to_thread(self._stop, node_id)

    async def remove(self, node_id: str, keep_network: bool = False) -> None:
        _check(node_id)
        await asyncio.to_thread(self._remove, node_id, keep_network)

    async def list(self) -> list[JobNodeState]:
        return await asyncio.to_thread(self._list)

    async def container_counters(self) -> list:
        """``ContainerStats`` (monitoring): cumulative CPU, memory, network and disk counters
        of every running node and replica container of this agent, keyed by node id (the
        server tags them with their job's or service's id). Docker's one-shot stats."""
        return await asyncio.to_thread(self._container_counters)

    async def export(self, node_id: str, path: str, destination: Path) -> None:
        """``path`` of the node's (exited) container as a tar archive at ``destination``
        (Docker's archive API: entries named ``<basename>/...``). FileNotFoundError when
        the container or the path does not exist."""
        _check(node_id)
        await asyncio.to_thread(self._export, node_id, path, destination)

    async def read_log(self, node_id: str, offset: int, limit: int) -> bytes:
        _check(node_id)
        path = self._log_path(node_id)

        def read() -> bytes:
            try:
                with open(path, "rb") as f:
                    f.seek(offset)
                    return f.read(limit)
            except FileNotFoundError:
                return b""

        return await asyncio.to_thread(read)

    # --- blocking work --------------------------------------------------------------------
    def _ensure_running(self, spec: JobNodeSpec) -> None:
        if self._container(spec.node_id) is not None:
            return  # a node runs once
        net = self._ensure_network(spec.network or spec.job_id)
        shim = RuntimeSpec(env_id=spec.node_id, image=spec.image, cpu_cores=spec.cpu_cores, memory_gib=spec.memory_gib,
                           gpu_uuids=list(spec.gpu_uuids), gpu_indices=list(spec.gpu_indices), fake_gpus=spec.fake_gpus,
                           env=dict(spec.env))
        env = {**user_environment(shim), HOSTFILE_VARIABLE: spec.hostfile,
               **gpu_environment(shim, nvidia_runtime=self._has_nvidia())}
        device_requests = None
        if not spec.fake_gpus and spec.gpu_uuids:
            device_requests = [docker.types.DeviceRequest(device_ids=list(spec.gpu_uuids), capabilities=[["gpu"]])]
        kwargs = dict(
            image=spec.image, name=container_name(spec.node_id), hostname=spec.alias or None,
            entrypoint=list(_ENTRYPOINT), command=list(spec.command), environment=env,
            labels={LABEL_JOB_NODE: spec.node_id, LABEL_JOB_ID: spec.network or spec.job_id, LABEL_JOB_SCOPE: self._scope},
            **container_limits(shim, self._hardening), device_requests=device_requests, detach=True,
            network=net, networking_config={net: self._client.api.create_endpoint_config(aliases=[spec.alias] if spec.alias else None)},
            # Inference replicas: their port on the private address only (the router's way in).
            ports={f"{c}/tcp": (self._private_address, h) for c, h in spec.ports.items()},
            # Dataset/model versions from the host's cache (the agent filled these in), read-only.
            volumes={host: {"bind": target, "mode": "ro"} for host, target in spec.read_only_binds},
        )
        try:
            container = self._client.containers.create(**kwargs)
        except ImageNotFound:
            if not self._pull_missing:
                raise
            self._client.images.pull(spec.image)
            container = self._client.containers.create(**kwargs)
        except APIError as exc:
            if exc.status_code != 409:
                raise
            return  # made meanwhile
        # The log file starts afresh with this container.
        self._log_path(spec.node_id).unlink(missing_ok=True)
        container.start()
        self._follow(spec.node_id)
        log.info("job node %s started on network %s", spec.node_id, net)

    def _stop(self, node_id: str) -> None:
        container = self._container(node_id)
        if container is None or container.status not in ("running", "restarting", "paused", "created"):
            return
        try:
            container.stop(timeout=self._stop_timeout)
        except NotFound:
            pass

    def _remove(self, node_id: str, keep_network: bool = False) -> None:
        container = self._container(node_id)
        job_id = None
        if container is not None:
            job_id = (container.labels or {}).get(LABEL_JOB_ID)
            try:
                container.remove(force=True)
            except NotFound:
                pass
        thread = self._followers.pop(node_id, None)
        if thread is not None:
            thread.join(timeout=2)
        self._log_path(node_id).unlink(missing_ok=True)
        if job_id and not keep_network:
            self._drop_network(job_id)

    def _list(self) -> list[JobNodeState]:
        self._prune_service_networks()
        found = self._client.containers.list(all=True, filters={"label": [f"{LABEL_JOB_SCOPE}={self._scope}"]})
        states = []
        for container in found:
            node_id = (container.labels or {}).get(LABEL_JOB_NODE)
            if not node_id or not _NODE_ID.match(node_id):
                continue
            state = container.attrs.get("State", {})
            follower = self._follow(node_id)
            if state.get("Status") == "created":
                # Created but never started (start failed, or the agent died in between):
                # a node runs once, so this one is over.
                status, code, message = "exited", None, "its container was created but could not start"
            elif state.get("Running") or state.get("Status") == "restarting":
                status, code, message = "running", None, ""
            else:
                follower.join(timeout=5)  # the whole log is copied before the exit is reported
                code = int(state.get("ExitCode", 0))
                status = "exited"
                message = "out of memory" if state.get("OOMKilled") else (state.get("Error") or f"exited with code {code}")
            path = self._log_path(node_id)
            size = path.stat().st_size if path.exists() else 0
            states.append(JobNodeState(node_id, status, code, message, size))
        return states

    # --- helpers ------------------------------------------------------------------------
    def _follow(self, node_id: str) -> threading.Thread:
        """The node's log follower, started (copying from the beginning) when absent."""
        with self._lock:
            thread = self._followers.get(node_id)
            if thread is not None:
                return thread
            thread = threading.Thread(target=self._copy_log, args=(node_id,), name=f"job-log-{node_id}", daemon=True)
            self._followers[node_id] = thread
            thread.start()
            return thread

    def _copy_log(self, node_id: str) -> None:
        path = self._log_path(node_id)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            container = self._client.containers.get(container_name(node_id))
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                for chunk in container.logs(stdout=True, stderr=True, stream=True, follow=True):
                    os.write(fd, chunk)
            finally:
                os.close(fd)
        except NotFound:
            pass
        except Exception:  # noqa: BLE001 - the next list() starts a new follower
            log.warning("job node %s: log follower stopped", node_id, exc_info=True)
            with self._lock:
                self._followers.pop(node_id, None)

    def _container_counters(self) -> list:
        from remotegpu.adapters.runtime.docker_runtime import _counters, _read_at
        from remotegpu.application.monitoring.ports import ContainerCounters

        out = []
        for c in self._client.containers.list(filters={"label": [f"{LABEL_JOB_SCOPE}={self._scope}"], "status": "running"}):
            node_id = (c.labels or {}).get(LABEL_JOB_NODE)
            if not node_id or not _NODE_ID.match(node_id):
                continue
            try:
                stats = self._client.api.stats(c.id, stream=False, one_shot=True)
            except Exception:  # noqa: BLE001 - gone meanwhile: next round
                continue
            out.append(_counters(ContainerCounters, node_id, _read_at(stats.get("read")) or time.time(), stats,
                                 c.attrs.get("HostConfig") or {}))
        return out

    def _export(self, node_id: str, path: str, destination: Path) -> None:
        container = self._container(node_id)
        if container is None:
            raise FileNotFoundError(f"node {node_id} has no container any more")
        try:
            stream, _ = container.get_archive(path, chunk_size=1024 * 1024)
        except NotFound:
            raise FileNotFoundError(f"{path} does not exist in node 0's container") from None
        with open(destination, "wb") as out:
            for chunk in stream:
                out.write(chunk)

    def _log_path(self, node_id: str) -> Path:
        return self._log_dir / f"{node_id}.log"

    def _container(self, node_id: str) -> Any | None:
        try:
            container = self._client.containers.get(container_name(node_id))
        except NotFound:
            return None
        if (container.labels or {}).get(LABEL_JOB_SCOPE) != self._scope:
            raise RuntimeError(f"a container named {container.name} exists that this agent did not make")
        return container

    def _networks_named(self, name: str) -> list[Any]:
        return [n for n in self._client.networks.list(names=[name]) if n.name == name]

    def _ensure_network(self, job_id: str) -> str:
        """The id of the job's network, made if missing. Agents sharing one engine may make
        it at the same moment (Docker's duplicate check is not atomic): whoever made one
        looks again a moment later, every agent takes the one with the smallest id, and
        the others (no container is on them yet) are removed."""
        name = network_name(job_id)
        found = self._networks_named(name)
        if not found:
            bridge = interface_prefix(self._scope) + "j" + hashlib.sha256(job_id.encode()).hexdigest()[:7]
            try:
                create_network(
                    self._client, name, driver="bridge", check_duplicate=True,
                    options={"com.docker.network.bridge.name": bridge, "com.docker.network.bridge.enable_icc": "true",
                             "com.docker.network.bridge.enable_ip_masquerade": "true"},
                    labels={LABEL_JOB_NETWORK: job_id, LABEL_JOB_SCOPE: self._scope},
                )
            except APIError as exc:
                if exc.status_code not in (409, 500):  # made meanwhile (or its bridge name taken by the twin)
                    raise
            time.sleep(NETWORK_SETTLE_SECONDS)  # a twin made at the same moment shows up by now
            found = self._networks_named(name)
        if not found:
            raise RuntimeError(f"network {name} could not be made")
        found.sort(key=lambda n: n.id)
        for extra in found[1:]:
            if (extra.attrs.get("Labels") or {}).get(LABEL_JOB_NETWORK) != job_id:
                continue
            try:
                if not self._client.containers.list(all=True, filters={"network": extra.id}):
                    extra.remove()
            except (NotFound, APIError):
                pass
        return found[0].id

    def _drop_network(self, job_id: str) -> None:
        for network in self._networks_named(network_name(job_id)):
            try:
                if (network.attrs.get("Labels") or {}).get(LABEL_JOB_NETWORK) != job_id:
                    continue
                if self._client.containers.list(all=True, filters={"network": network.id}):
                    continue  # another node of the job (another agent's, on this engine) still uses it
                network.remove()
            except (NotFound, APIError):
                pass

    def _prune_service_networks(self) -> None:
        """Services' networks outlive their replicas (a service at zero comes back faster);
        one unused for ``SERVICE_NETWORK_IDLE_SECONDS`` goes (checked once a minute)."""
        now = time.monotonic()
        if now - self._pruned_at < 60:
            return
        self._pruned_at = now
        try:
            for network in self._client.networks.list(filters={"label": f"{LABEL_JOB_SCOPE}={self._scope}"}):
                key = (network.attrs.get("Labels") or {}).get(LABEL_JOB_NETWORK, "")
                if not key.startswith("svc-"):
                    continue
                if _younger_than(network, SERVICE_NETWORK_IDLE_SECONDS):
                    continue
                if self._client.containers.list(all=True, filters={"network": network.name}):
                    continue
                network.remove()
        except (NotFound, APIError) as exc:
            log.info("service networks not pruned: %s", exc)

    def _has_nvidia(self) -> bool:
        if self._nvidia is None:
            try:
                self._nvidia = has_nvidia_runtime(self._client.info())
            except Exception:  # noqa: BLE001
                self._nvidia = False
        return self._nvidia

    def close(self) -> None:
        self._client.close()


def _check(node_id: str) -> None:
    if not _NODE_ID.match(node_id):
        raise ValueError(f"bad job node id {node_id!r}")
