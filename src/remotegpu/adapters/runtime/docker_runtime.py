"""EnvironmentRuntime on a Docker engine (the docker SDK, blocking calls in threads).

One environment = one container ``rgpu-env-<id>`` plus one named volume
``rgpu-vol-<id>`` mounted at ``/root/workspace``. Both carry the labels
``remotegpu.managed=true``, ``remotegpu.env_id=<id>``, ``remotegpu.scope=<scope>`` (the
installation: see ``entrypoints/installation.py``) and ``remotegpu.host_id`` (the host
it was placed on), so a restarted agent finds them again without any state of its own,
and never takes another installation's for its own.

The whole disk survives stop/start: stop is ``docker stop``, never a removal. The
container records a hash of its spec; started again with the same spec (the usual
case: the same ports, held for the environment's life, and the same GPUs when free)
it is simply ``docker start``-ed. When something Docker cannot change in place did
change (other GPUs, a restart's new generation), its filesystem is carried over:
the stopped container is committed to a per-environment snapshot image
``rgpu-snapshot:<id>-<ms>``, removed, and created again from that snapshot; older
snapshots of the environment are dropped. A container that is missing while a
snapshot exists (an agent that died between the two steps) is created from the
snapshot too. Only a change of image starts from the new image (the volume stays).
``remove`` (delete) removes container, volume and snapshots. Containers are never
removed on stop, so they also survive a reboot of the host (Docker keeps them).

Workspace shared disks are the exception: their size is enforced where the host allows
(a loop-mounted ext4 image per workspace, adapters/runtime/shared_disks.py).

Disk size: ``RuntimeSpec.disk_gib`` is only *recorded*, as the volume label
``remotegpu.disk_gib`` when the volume is created; it is not enforced. Docker's
default ``local`` volume driver on overlay2 has no size limit (``--storage-opt size``
needs overlay2 on xfs with project quotas, and applies to the container's writable
layer, not to named volumes). The platform enforces the workspace's storage quota
from the sizes users chose; capping what an environment actually writes needs a
quota-capable volume driver (xfs project quotas, LVM, a CSI/cloud block driver).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import threading
import time
from datetime import datetime, timezone
from typing import Any

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.types import DeviceRequest

from remotegpu.adapters.runtime.docker_hardening import (
    Hardening,
    container_limits,
    gpu_environment,
    has_nvidia_runtime,
    user_environment,
)
from remotegpu.adapters.runtime.docker_network import WorkspaceNetworks
from remotegpu.adapters.runtime.egress import EgressRules, EgressUnavailable
from remotegpu.adapters.runtime.shared_disks import LoopDisks, SharedDiskError
from remotegpu.adapters.runtime.threaded import ThreadedRuntime
from remotegpu.application.environments.ports import (
    LABEL_ENV_ID,
    LABEL_HOST,
    LABEL_MANAGED,
    WORKSPACE_PATH,
    EnvironmentRuntimeError,
    RuntimeSpec,
    RuntimeState,
    generation_of,
)
from remotegpu.domain.environments.models import SSH_CONTAINER_PORT

LABEL_SCOPE = "remotegpu.scope"
LABEL_SPEC = "remotegpu.spec"
# The image the spec asked for (a snapshot's base). Not "remotegpu.image": the base
# image itself carries that label, and a container inherits its image's labels.
LABEL_IMAGE = "remotegpu.spec_image"
SNAPSHOT_REPOSITORY = "rgpu-snapshot"
# A snapshot made by commit is one layer more than the container's image; past this
# many the container's files are flattened into a one-layer snapshot instead (overlay2
# cannot stack more than ~125 layers).
MAX_SNAPSHOT_LAYERS = 60
LABEL_DISK_GIB = "remotegpu.disk_gib"  # recorded, not enforced (see the module docstring)
#: On a shared disk's volume: "true" when its size is enforced (a loop-mounted ext4 image, shared_disks.py).
LABEL_DISK_ENFORCED = "remotegpu.disk_enforced"
#: The workspace a shared-disk volume belongs to (``rgpu-shared-<workspace id>``, at /root/shared).
LABEL_SHARED_WORKSPACE = "remotegpu.shared_workspace"
SHARED_DISK_PATH = "/root/shared"
_ENV_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,100}$")
# Exit codes of a container stopped on purpose (0 from the entrypoint, or SIGTERM/SIGKILL).
_STOPPED_EXIT_CODES = {0, 137, 143}
_EGRESS_CHECK_SECONDS = 30.0  # how often the agent re-checks its firewall rules
_EGRESS_LOG_SECONDS = 300.0  # how often a missing firewall is logged again
_PRUNE_EVERY_SECONDS = 60.0  # unused networks, besides on the round after a remove

log = logging.getLogger("remotegpu.runtime.docker")


def docker_available(timeout: float = 2.0) -> bool:
    """Whether a Docker daemon answers (DOCKER_HOST or the default socket)."""
    try:
        client = docker.from_env(timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - any failure means "no daemon here"
        return False


class DockerRuntime(ThreadedRuntime):
    """EnvironmentRuntime (with exec) backed by Docker containers and volumes.

    ``scope`` separates runtimes sharing one daemon (an agent and a test run):
    each lists, adopts and removes only what carries its scope.
    """

    def __init__(
        self,
        client: docker.DockerClient | None = None,
        *,
        scope: str = "default",
        bind_address: str = "0.0.0.0",
        private_bind_address: str = "127.0.0.1",
        stop_timeout: int = 5,
        pull_missing: bool = True,
        hardening: Hardening | None = None,
        egress: EgressRules | None = None,
        nvidia_runtime: bool | None = None,
        shared_disks: LoopDisks | None = None,
    ) -> None:
        self._client = client or docker.from_env()
        # Workspace shared disks with their size enforced (shared_disks.py); None: plain volumes.
        self._shared_disks = shared_disks
        self._shared_lock = threading.Lock()
        self._scope = scope
        self._bind_address = bind_address
        self._private_bind_address = private_bind_address
        self._stop_timeout = stop_timeout
        self._pull_missing = pull_missing
        self._locks: dict[str, asyncio.Lock] = {}
        # Isolation (see docker_hardening.py, docker_network.py, egress.py). ``egress``
        # None: this instance installs no firewall rules (lookups, tests of other things);
        # the agent's runtime gets one from select_runtime.
        self._hardening = hardening or Hardening()
        self._networks = WorkspaceNetworks(self._client, scope)
        self._egress = egress
        self._nvidia_runtime = nvidia_runtime  # None: asked from `docker info` when first needed
        self.egress_problem: str | None = None  # why the egress rules are not in place, if they are not
        self._egress_checked_at = float("-inf")
        self._egress_logged_at = float("-inf")
        self._pruned_at = float("-inf")
        self._housekeeper: asyncio.Future[None] | None = None

    @staticmethod
    def container_name(env_id: str) -> str:
        return f"rgpu-env-{env_id}"

    @staticmethod
    def shared_volume_name(workspace_id: str) -> str:
        return f"rgpu-shared-{workspace_id}"

    @staticmethod
    def volume_name(env_id: str) -> str:
        return f"rgpu-vol-{env_id}"

    # -- the port ---------------------------------------------------------------

    def _validate_env_id(self, env_id: str) -> None:
        _check_env_id(env_id)

    async def exec(self, env_id: str, argv: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
        _check_env_id(env_id)
        return await asyncio.to_thread(self._exec, env_id, list(argv), dict(env or {}))

    async def container_routes(self, env_id: str, container_port: int) -> tuple[tuple[str, int] | None, str | None]:
        """Ways into a running environment that skip Docker's port proxy, from one look
        at Docker; (None, None) when it does not run. Only meaningful to a process on the
        Docker host.

        * (container IP, ``container_port``), reachable from this machine; None without an
          IP (e.g. host networking);
        * its root directory as this machine sees it, ``/proc/<container pid>/root``; None
          when this process may not look inside (it must be in the host's PID namespace,
          as root). What lies below is the container user's to change: follow no link in
          it (``adapters/runtime/contained.py``)."""
        _check_env_id(env_id)
        return await asyncio.to_thread(self._container_routes, env_id, container_port)

    # -- blocking implementation (runs in a worker thread) ----------------------

    def _ensure_running(self, spec: RuntimeSpec) -> RuntimeState:
        try:
            if spec.shared_disk_gib and spec.workspace_id:
                self._ensure_shared_disk(spec.workspace_id, spec.shared_disk_gib)
            container = self._container(spec.env_id)
            if container is not None and container.status != "running":
                if container.labels.get(LABEL_SPEC) != _spec_hash(spec):
                    container = self._recreate_keeping_files(container, spec)
            if container is None:
                snapshot = self._snapshot_for(spec)
                stale = self._stale_env(self._client.images.get(snapshot).attrs, spec) if snapshot else None
                container = self._create(spec, image=snapshot, clear_env=stale)
            if container.status == "paused":
                container.unpause()
            elif container.status != "running":
                start_once_running(container)
            container.reload()
        except DockerException as exc:
            raise EnvironmentRuntimeError(f"environment {spec.env_id}: {_explain(exc)}") from exc
        state = _state(spec.env_id, container)
        if state.status != "running":
            raise EnvironmentRuntimeError(f"environment {spec.env_id} did not start: {state.message}")
        return state

    def _ensure_shared_disk(self, workspace_id: str, size_gib: int) -> None:
        """The workspace's shared disk on this host, before any of its environments starts:
        made by the first of them here, kept when environments go (deleting an environment
        never deletes it). Its size is enforced where the host allows (shared_disks.py):
        attached again after a reboot, grown when the size grew."""
        name = self.shared_volume_name(workspace_id)
        labels = {LABEL_MANAGED: "true", LABEL_SCOPE: self._scope, LABEL_SHARED_WORKSPACE: workspace_id}
        with self._shared_lock:
            try:
                existing = self._client.volumes.get(name)
            except NotFound:
                existing = None
            problem = self._shared_disks.problem() if self._shared_disks else "no directory for disk images configured"
            enforced = existing is None or (existing.attrs.get("Options") or {}).get("type") == "ext4"
            if problem is None and enforced:
                try:
                    link = self._shared_disks.ensure(workspace_id, size_gib)
                except SharedDiskError as exc:
                    raise EnvironmentRuntimeError(f"shared disk of workspace {workspace_id}: {exc}") from exc
                if existing is None:
                    self._client.volumes.create(name=name, driver="local", driver_opts={"type": "ext4", "device": str(link)},
                                                labels={**labels, LABEL_DISK_GIB: str(size_gib), LABEL_DISK_ENFORCED: "true"})
                return
            if existing is None:
                log.warning("shared disk of workspace %s: its size (%d GiB) is not enforced on this host: %s",
                            workspace_id, size_gib, problem)
                self._client.volumes.create(name=name, labels={**labels, LABEL_DISK_GIB: str(size_gib), LABEL_DISK_ENFORCED: "false"})

    def _recreate_keeping_files(self, old: Any, spec: RuntimeSpec) -> Any:
        """Replace the stopped container ``old`` by one made for ``spec``, with the files
        ``old`` had: commit it to a new snapshot, remove it, create from the snapshot,
        then drop the environment's older snapshots. At every step the files exist
        somewhere (the old container, then the snapshot), so a failure or a crash in
        between loses nothing: the next attempt starts from the snapshot."""
        base = old.labels.get(LABEL_IMAGE, spec.image)
        if base != spec.image:
            # Another image was asked for: its files, not the old image's (the disk stays).
            old.remove(force=True)
            self._remove_snapshots(spec.env_id)
            return self._create(spec)
        stale = self._stale_env(old.attrs, spec)
        tag = f"{spec.env_id}-{int(time.time() * 1000)}"
        if self._layers(old.attrs.get("Image", "")) + 1 > self.max_snapshot_layers:
            self._flatten(old, spec, tag)
        else:
            old.commit(repository=SNAPSHOT_REPOSITORY, tag=tag, message=f"remotegpu: files of environment {spec.env_id}")
        snapshot = f"{SNAPSHOT_REPOSITORY}:{tag}"
        old.remove(force=True)
        container = self._create(spec, image=snapshot, clear_env=stale)
        self._remove_snapshots(spec.env_id, keep=snapshot)
        return container

    max_snapshot_layers = MAX_SNAPSHOT_LAYERS

    def _layers(self, image_id: str) -> int:
        try:
            return len(((self._client.images.get(image_id).attrs.get("RootFS") or {}).get("Layers")) or [])
        except DockerException:
            return 0

    def _flatten(self, old: Any, spec: RuntimeSpec, tag: str) -> None:
        """A one-layer snapshot of ``old``'s whole filesystem (``docker export`` streamed
        into ``docker import``, the volume not included), with ``spec.image``'s config
        (entrypoint, command, variables, working directory, ...) and ``old``'s labels."""
        config = self._client.images.get(spec.image).attrs.get("Config") or {}
        labels = {**(config.get("Labels") or {}), **{k: v for k, v in (old.labels or {}).items() if k.startswith("remotegpu.")}}
        self._client.api.import_image(
            src=old.export(), repository=SNAPSHOT_REPOSITORY, tag=tag, changes=_dockerfile_config(config, labels),
            stream_src=True,
        )

    def _stale_env(self, attrs: dict[str, Any], spec: RuntimeSpec) -> list[str]:
        """Variables in ``attrs`` (of the old container, or of a snapshot) that neither
        ``spec.image`` nor ``spec`` sets any more: a snapshot keeps the container's
        variables in its config, and Docker offers no way to unset one, so the new
        container gets them empty."""
        try:
            image_env = (self._client.images.get(spec.image).attrs.get("Config") or {}).get("Env") or []
        except DockerException:
            return []  # the image is gone: which variables were its own is unknown, clear none
        keep = {e.split("=", 1)[0] for e in image_env} | set(spec.env)
        had = [e.split("=", 1)[0] for e in (attrs.get("Config") or {}).get("Env") or []]
        return [key for key in had if key not in keep]

    def _snapshot_for(self, spec: RuntimeSpec) -> str | None:
        """The environment's latest snapshot of ``spec.image``, if any (a container
        removed by ``_recreate_keeping_files`` whose replacement was never created)."""
        newest = None
        for image in self._snapshots(spec.env_id):
            if (image.labels or {}).get(LABEL_IMAGE, spec.image) != spec.image:
                continue
            for ref in image.tags:
                if newest is None or _snapshot_time(ref) > _snapshot_time(newest):
                    newest = ref
        return newest

    def _snapshots(self, env_id: str) -> list[Any]:
        from remotegpu.adapters.runtime.docker_images import list_images

        filters = {"label": [f"{LABEL_MANAGED}=true", f"{LABEL_ENV_ID}={env_id}", f"{LABEL_SCOPE}={self._scope}"]}
        return list_images(self._client, SNAPSHOT_REPOSITORY, filters)

    def _remove_snapshots(self, env_id: str, keep: str | None = None) -> None:
        """Untag (and so delete, unless a newer snapshot builds on it) every snapshot of
        ``env_id`` but ``keep``."""
        for image in self._snapshots(env_id):
            for ref in image.tags:
                if ref == keep or not ref.startswith(f"{SNAPSHOT_REPOSITORY}:{env_id}-"):
                    continue
                try:
                    self._client.images.remove(ref)
                except NotFound:
                    pass

    def _create(self, spec: RuntimeSpec, *, image: str | None = None, clear_env: list[str] | None = None) -> Any:
        labels = {**spec.labels, **self._labels(spec.env_id), LABEL_IMAGE: spec.image}
        new_disk = self._volume(spec.env_id) is None
        volume_labels = dict(labels)
        if spec.disk_gib is not None:
            volume_labels[LABEL_DISK_GIB] = str(spec.disk_gib)
        volume = self._client.volumes.create(name=self.volume_name(spec.env_id), labels=volume_labels)
        try:
            return self._create_container(spec, labels, image=image, clear_env=clear_env)
        except Exception:
            if new_disk:  # a failed first start leaves no disk behind
                volume.remove(force=True)
            raise

    def _create_container(
        self, spec: RuntimeSpec, labels: dict[str, str], *, image: str | None = None, clear_env: list[str] | None = None,
    ) -> Any:
        nvidia = self._has_nvidia_runtime()
        # The GPU variables come last: neither the spec nor the image decides what is visible.
        # clear_env: see _stale_env.
        env = {**dict.fromkeys(clear_env or [], ""), **user_environment(spec), **gpu_environment(spec, nvidia_runtime=nvidia)}
        device_requests = None
        if not spec.fake_gpus and (spec.gpu_uuids or spec.gpu_indices):
            ids = list(spec.gpu_uuids) or [str(i) for i in spec.gpu_indices]
            device_requests = [DeviceRequest(device_ids=ids, capabilities=[["gpu"]])]
        kwargs = dict(
            image=image or spec.image,  # image: a snapshot of the environment's own files
            name=self.container_name(spec.env_id),
            hostname=_hostname(spec.env_id),
            labels={**labels, LABEL_SPEC: _spec_hash(spec)},
            environment=env,
            **container_limits(spec, self._hardening),
            volumes={self.volume_name(spec.env_id): {"bind": WORKSPACE_PATH, "mode": "rw"},
                     **({self.shared_volume_name(spec.workspace_id): {"bind": SHARED_DISK_PATH, "mode": "rw"}}
                        if spec.shared_disk_gib and spec.workspace_id else {}),
                     **{host: {"bind": target, "mode": "ro"} for host, target in spec.read_only_binds}},
            ports={f"{c}/tcp": (self._bind_for(c, spec), h) for c, h in spec.ports.items()},
            device_requests=device_requests,
            init=False,
            detach=True,
        )
        with self._networks.lock:  # no prune between making the network and attaching to it
            kwargs["network"] = self._networks.ensure(self._networks.tenant_of(spec.workspace_id, spec.env_id))
            try:
                return self._client.containers.create(**kwargs)
            except ImageNotFound:
                if not self._pull_missing:
                    raise
                try:
                    from remotegpu.adapters.runtime.docker_images import auth_config

                    self._client.images.pull(spec.image, auth_config=auth_config(spec.registry_auth))
                except DockerException as exc:
                    raise ImagePullFailed(spec.image, exc) from exc
                return self._client.containers.create(**kwargs)
            except APIError as exc:
                if exc.status_code != 409:  # 409: another caller created it meanwhile
                    raise
                container = self._container(spec.env_id)
                if container is None:
                    raise
                return container

    def _has_nvidia_runtime(self) -> bool:
        if self._nvidia_runtime is None:
            self._nvidia_runtime = has_nvidia_runtime(self._client.info())
        return self._nvidia_runtime

    # -- images (issue 15: the agent's pulls, saves and builds; docker_images.py) --------

    async def has_image(self, reference: str) -> bool:
        from remotegpu.adapters.runtime import docker_images as di

        return await asyncio.to_thread(di.has_image, self._client, reference)

    async def images_present(self, references: list[str]) -> list[str]:
        def present() -> list[str]:
            from remotegpu.adapters.runtime.docker_images import list_images

            tags = {t for image in list_images(self._client) for t in image.tags}
            return [r for r in references if r in tags]

        return await asyncio.to_thread(present)

    async def pull_image(self, reference: str, auth: tuple[str, str, str] | None, progress) -> None:
        from remotegpu.adapters.runtime import docker_images as di

        try:
            await asyncio.to_thread(di.pull, self._client, reference, auth, progress)
        except (DockerException, di.JobFailed) as exc:
            raise EnvironmentRuntimeError(str(ImagePullFailed(reference, exc))) from exc

    async def save_environment(self, env_id: str, target: str, auth, log_line, cancelled):
        """Flatten the environment's container into ``target`` and push it (docker_images.save_container)."""
        from remotegpu.adapters.runtime import docker_images as di

        _check_env_id(env_id)

        def run():
            container = self._container(env_id)
            if container is None:
                raise di.JobFailed("the environment has no container on this host")
            base = (container.labels or {}).get(LABEL_IMAGE) or container.attrs.get("Config", {}).get("Image", "")
            return di.save_container(self._client, container, base, target, auth, log_line, cancelled)

        return await asyncio.to_thread(run)

    async def build_image(self, dockerfile: str, context: str, target: str, base: str, auth, cpu_cores: int,
                          memory_gib: int, timeout_seconds: int, log_line, cancelled):
        from remotegpu.adapters.runtime import docker_images as di

        return await asyncio.to_thread(di.build, self._client, dockerfile, context, target, base, auth, cpu_cores,
                                       memory_gib, timeout_seconds, log_line, cancelled)

    # -- isolation: networks and egress rules (around the port's calls) ------------------

    async def ensure_running(self, spec: RuntimeSpec) -> RuntimeState:
        self._validate_env_id(spec.env_id)
        async with self._lock(spec.env_id):
            await asyncio.to_thread(self._prepare, spec)
        return await super().ensure_running(spec)

    async def remove(self, env_id: str) -> None:
        await super().remove(env_id)
        # Its network goes in the next housekeeping (started by the agent's next ``list``;
        # one younger than a minute a round later), not here: the agent reports first.
        self._pruned_at = float("-inf")

    async def list(self) -> list[RuntimeState]:
        """The port's ``list``; it also starts a round of housekeeping (egress rules
        checked, unused networks removed) in the background, so that the agent's report
        does not wait for it."""
        states = await super().list()
        running = self._housekeeper is not None and not self._housekeeper.done() \
            and self._housekeeper.get_loop() is asyncio.get_running_loop()
        if not running:
            self._housekeeper = asyncio.ensure_future(self.housekeeping())
        return states

    async def housekeeping(self) -> None:
        """Keep the egress rules in place and remove networks no container uses (each at
        most every so often, and the networks at once after a ``remove``)."""
        await asyncio.to_thread(self._housekeeping)

    async def close(self) -> None:
        """The owner (the agent) stops: unused networks go, and the egress rules go with
        the last network of this scope. While any environment of the scope remains, its
        rules stay: a container outlives its agent, and so does its confinement."""
        housekeeper = self._housekeeper
        if housekeeper is not None and not housekeeper.done() and housekeeper.get_loop() is asyncio.get_running_loop():
            await asyncio.gather(housekeeper, return_exceptions=True)
        await asyncio.to_thread(self._close)

    def _prepare(self, spec: RuntimeSpec) -> None:
        self._keep_egress()
        try:
            container = self._container(spec.env_id)
            if container is not None:  # made elsewhere or by an older version: onto its own network
                self._networks.connect_only(container, self._networks.tenant_of(spec.workspace_id, spec.env_id))
        except DockerException as exc:
            raise EnvironmentRuntimeError(f"environment {spec.env_id}: {_explain(exc)}") from exc

    def _housekeeping(self) -> None:
        self._keep_egress()
        try:
            self._prune_networks()
        except DockerException as exc:  # retried on the next round
            log.warning("could not prune networks: %s", _explain(exc))

    def _prune_networks(self) -> None:
        if time.monotonic() - self._pruned_at >= _PRUNE_EVERY_SECONDS:
            self._pruned_at = time.monotonic()
            self._networks.prune()

    def _keep_egress(self) -> None:
        """Install the egress rules, and re-check them now and then (a firewall reload or
        a Docker restart may flush them). Without them environments still start: the
        problem is logged loudly and kept in ``egress_problem``."""
        if self._egress is None or time.monotonic() - self._egress_checked_at < _EGRESS_CHECK_SECONDS:
            return
        self._egress_checked_at = time.monotonic()
        try:
            if self.egress_problem is not None or not self._egress.installed():
                self._egress.install()
                log.info("egress rules installed (chains %s, %s)", self._egress.input_chain, self._egress.forward_chain)
            self.egress_problem = None
        except EgressUnavailable as exc:
            self.egress_problem = str(exc)
            if time.monotonic() - self._egress_logged_at >= _EGRESS_LOG_SECONDS:
                self._egress_logged_at = time.monotonic()
                log.error("EGRESS RULES NOT INSTALLED: environments on this host can reach the host's own "
                          "addresses and cloud metadata services: %s", exc)

    def _close(self) -> None:
        try:
            self._networks.prune(grace_seconds=0)  # this process attaches nothing any more
            if self._egress is not None and not self._networks.list():
                self._egress.remove()
        except DockerException as exc:
            log.warning("could not clean up networks on close: %s", _explain(exc))

    def _bind_for(self, container_port: int, spec: RuntimeSpec) -> str:
        return self._private_bind_address if container_port in spec.private_ports else self._bind_address

    def _stop(self, env_id: str) -> None:
        container = self._container(env_id)
        if container is None or container.status not in ("running", "restarting", "paused"):
            return
        try:
            container.stop(timeout=self._stop_timeout)
        except NotFound:
            pass

    def _remove(self, env_id: str) -> None:
        """Delete: container, volume and snapshots. Only for an environment the server
        marked deleted (the agent never removes anything else)."""
        container = self._container(env_id)
        if container is not None:
            try:
                container.remove(force=True)
            except NotFound:
                pass
        self._remove_snapshots(env_id)
        volume = self._volume(env_id)
        if volume is not None:
            try:
                volume.remove(force=True)
            except NotFound:
                pass

    def _inspect(self, env_id: str) -> RuntimeState | None:
        container = self._container(env_id)
        if container is not None:
            return _state(env_id, container)
        if self._volume(env_id) is not None:
            return RuntimeState(env_id, "stopped", None, message="disk kept, no container")
        return None

    async def container_counters(self) -> list:
        """``ContainerStats``: cumulative counters of every running environment container
        (Docker's one-shot stats: no second sample waited for; rates are the collector's)."""
        return await asyncio.to_thread(self._container_counters)

    def _container_counters(self) -> list:
        import time as _time

        from remotegpu.application.monitoring.ports import ContainerCounters

        filters = {"label": [f"{LABEL_MANAGED}=true", f"{LABEL_SCOPE}={self._scope}"], "status": "running"}
        out = []
        for c in self._client.containers.list(filters=filters):
            env_id = c.labels.get(LABEL_ENV_ID)
            if not env_id:
                continue
            try:
                stats = self._client.api.stats(c.id, stream=False, one_shot=True)
            except Exception:  # noqa: BLE001 - gone meanwhile: next round
                continue
            out.append(_counters(ContainerCounters, env_id, _read_at(stats.get("read")) or _time.time(), stats,
                                 c.attrs.get("HostConfig") or {}))
        return out

    def _list(self) -> list[RuntimeState]:
        filters = {"label": [f"{LABEL_MANAGED}=true", f"{LABEL_SCOPE}={self._scope}"]}
        states = {
            c.labels[LABEL_ENV_ID]: _state(c.labels[LABEL_ENV_ID], c)
            for c in self._client.containers.list(all=True, filters=filters)
            if LABEL_ENV_ID in c.labels
        }
        for volume in self._client.volumes.list(filters=filters):
            labels = volume.attrs.get("Labels") or {}
            env_id = labels.get(LABEL_ENV_ID)
            if env_id and env_id not in states:
                states[env_id] = RuntimeState(env_id, "stopped", None, message="disk kept, no container",
                                              host_id=labels.get(LABEL_HOST, ""))
        return [states[k] for k in sorted(states)]

    def _running_container(self, env_id: str) -> Any | None:
        """The environment's container if it runs; None otherwise, or when Docker fails."""
        try:
            container = self._container(env_id)
        except DockerException:
            return None
        return container if container is not None and container.status == "running" else None

    def _container_routes(self, env_id: str, container_port: int) -> tuple[tuple[str, int] | None, str | None]:
        container = self._running_container(env_id)
        if container is None:
            return None, None
        return _endpoint_of(container, container_port), _root_of(container)

    def _exec(self, env_id: str, argv: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
        container = self._container(env_id)
        if container is None or container.status != "running":
            raise EnvironmentRuntimeError(f"environment {env_id} is not running")
        result = container.exec_run(argv, user="root", workdir=WORKSPACE_PATH, environment=env or None)
        return int(result.exit_code), (result.output or b"").decode("utf-8", "replace")

    # -- lookups ----------------------------------------------------------------

    def _labels(self, env_id: str) -> dict[str, str]:
        return {LABEL_MANAGED: "true", LABEL_ENV_ID: env_id, LABEL_SCOPE: self._scope}

    def _mine(self, labels: dict[str, str] | None, env_id: str) -> bool:
        labels = labels or {}
        return labels.get(LABEL_MANAGED) == "true" and labels.get(LABEL_ENV_ID) == env_id \
            and labels.get(LABEL_SCOPE) == self._scope

    def _container(self, env_id: str) -> Any | None:
        """The managed container of ``env_id``. A same-named container that is not
        ours counts as absent: it is never stopped or removed, and creating ours then
        fails with Docker's name conflict."""
        try:
            container = self._client.containers.get(self.container_name(env_id))
        except NotFound:
            return None
        return container if self._mine(container.labels, env_id) else None

    def _volume(self, env_id: str) -> Any | None:
        try:
            volume = self._client.volumes.get(self.volume_name(env_id))
        except NotFound:
            return None
        return volume if self._mine(volume.attrs.get("Labels"), env_id) else None



def _check_env_id(env_id: str) -> None:
    if not _ENV_ID.match(env_id):
        raise ValueError(f"invalid environment id for Docker names: {env_id!r}")


def _hostname(env_id: str) -> str:
    return re.sub(r"[^a-z0-9-]", "-", env_id.lower())[:63].strip("-") or "environment"


def _spec_hash(spec: RuntimeSpec) -> str:
    fields = {
        "image": spec.image,
        "cpu": spec.cpu_cores,
        "mem": spec.memory_gib,
        "gpu_uuids": list(spec.gpu_uuids),
        "gpu_indices": list(spec.gpu_indices),
        "fake": spec.fake_gpus,
        "env": dict(sorted(spec.env.items())),
        "ports": {str(c): h for c, h in sorted(spec.ports.items())},
        "labels": dict(sorted(spec.labels.items())),
    }
    if spec.private_ports:  # only when set, so older containers keep their hash
        fields["private"] = sorted(spec.private_ports)
    if spec.read_only_binds:  # idem
        fields["binds"] = sorted(spec.read_only_binds)
    if spec.shared_disk_gib:  # idem: a stopped container made before the shared disk is recreated to get it
        fields["shared"] = spec.workspace_id
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def _state(env_id: str, container: Any) -> RuntimeState:
    attrs = container.attrs
    status = attrs.get("State", {})
    generation = generation_of(container.labels)
    host_id = (container.labels or {}).get(LABEL_HOST, "")
    if status.get("Running") and not status.get("Restarting"):
        return RuntimeState(
            env_id, "running", container.id, _published_ports(attrs), _parse_time(status.get("StartedAt")),
            generation=generation, ssh_sessions=established_connections(status.get("Pid"), SSH_CONTAINER_PORT),
            host_id=host_id,
        )
    code = status.get("ExitCode", 0)
    if status.get("Status") in ("dead", "restarting") or status.get("OOMKilled") or code not in _STOPPED_EXIT_CODES:
        reason = "out of memory" if status.get("OOMKilled") else status.get("Error") or f"exited with code {code}"
        return RuntimeState(env_id, "failed", container.id, message=reason, generation=generation, host_id=host_id)
    return RuntimeState(env_id, "stopped", container.id, generation=generation, host_id=host_id)


def _dockerfile_config(config: dict[str, Any], labels: dict[str, str]) -> list[str]:
    """An image config as the Dockerfile instructions ``docker import --change`` takes."""
    def quoted(value: str) -> str:
        return json.dumps(value, ensure_ascii=False)

    changes = []
    for item in config.get("Env") or []:
        key, _, value = item.partition("=")
        changes.append(f"ENV {key}={quoted(value)}")
    for instruction, key in (("ENTRYPOINT", "Entrypoint"), ("CMD", "Cmd")):
        if config.get(key):
            changes.append(f"{instruction} {json.dumps(list(config[key]))}")
    if config.get("WorkingDir"):
        changes.append(f"WORKDIR {config['WorkingDir']}")
    if config.get("User"):
        changes.append(f"USER {config['User']}")
    if config.get("StopSignal"):
        changes.append(f"STOPSIGNAL {config['StopSignal']}")
    for port in config.get("ExposedPorts") or {}:
        changes.append(f"EXPOSE {port}")
    for key, value in labels.items():
        changes.append(f"LABEL {quoted(key)}={quoted(value)}")
    return changes


def _snapshot_time(ref: str) -> int:
    """The milliseconds in a snapshot's tag ``rgpu-snapshot:<env id>-<ms>`` (0 if none)."""
    stamp = ref.rsplit("-", 1)[-1]
    return int(stamp) if stamp.isdigit() else 0


def _endpoint_of(container: Any, container_port: int) -> tuple[str, int] | None:
    settings = container.attrs.get("NetworkSettings") or {}
    addresses = [n.get("IPAddress") for n in (settings.get("Networks") or {}).values()] + [settings.get("IPAddress")]
    address = next((a for a in addresses if a), None)
    return (address, container_port) if address else None


def _root_of(container: Any) -> str | None:
    pid = (container.attrs.get("State") or {}).get("Pid")
    if not isinstance(pid, int) or pid <= 0:
        return None
    root = f"/proc/{pid}/root"
    return root if os.access(root, os.X_OK) else None


def start_once_running(container: Any, *, wait_seconds: float = 5.0, poll_seconds: float = 0.1) -> None:
    """Start ``container``. Should Docker refuse because another start of it is under
    way (an agent killed mid-start and restarted, two agents of one host), that start's
    result counts: its ports are already held for this very container, so ours fails
    with "port is already allocated". The refusal stands if it is not running soon."""
    try:
        container.start()
    except APIError:
        deadline = time.monotonic() + wait_seconds
        while True:
            container.reload()
            if container.status == "running":
                return
            if time.monotonic() >= deadline:
                raise
            time.sleep(poll_seconds)


def established_connections(pid: Any, port: int, proc: str = "/proc") -> int:
    """TCP connections ESTABLISHED to local ``port`` in the network namespace of
    process ``pid`` (a container's init), read from ``/proc/<pid>/net/tcp{,6}``: no
    ``docker exec``, a couple of small file reads. 0 when they cannot be read (no such
    process, an agent that does not share the host's PID namespace)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return 0
    # "  sl  local_address rem_address st ...": st 01 is ESTABLISHED (one regex pass in C:
    # the tables of a busy container hold thousands of lines).
    row = re.compile(rf"^\s*\d+: [0-9A-F]+:{port:04X} [0-9A-F]+:[0-9A-F]{{4}} 01 ", re.MULTILINE)
    count = 0
    for name in ("tcp", "tcp6"):
        try:
            with open(f"{proc}/{pid}/net/{name}", encoding="ascii", errors="replace") as table:
                count += len(row.findall(table.read()))
        except OSError:
            continue
    return count


def _published_ports(attrs: dict[str, Any]) -> dict[int, int]:
    ports: dict[int, int] = {}
    for key, bindings in (attrs.get("NetworkSettings", {}).get("Ports") or {}).items():
        if bindings and key.endswith("/tcp"):
            ports[int(key.split("/")[0])] = int(bindings[0]["HostPort"])
    return ports


def _parse_time(value: str | None) -> datetime | None:
    """Docker's RFC 3339 times carry nanoseconds, which fromisoformat refuses."""
    if not value or value.startswith("0001-"):
        return None
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?", value)
    if not match:
        return None
    fraction = (match.group(2) or ".0")[1:7].ljust(6, "0")
    return datetime.fromisoformat(f"{match.group(1)}.{fraction}").replace(tzinfo=timezone.utc)


def _read_at(value: Any) -> float | None:
    """Docker's stats ``read`` time (RFC 3339, nanoseconds) as epoch seconds: when the
    counters were read, not when the answer arrived."""
    if not isinstance(value, str) or value.startswith("0001-"):
        return None
    from datetime import datetime

    head, _, frac = value.rstrip("Z").partition(".")
    try:
        base = datetime.fromisoformat(head + "+00:00").timestamp()
    except ValueError:
        return None
    digits = "".join(ch for ch in frac if ch.isdigit())
    return base + (float("0." + digits) if digits else 0.0)


def _counters(cls: Any, env_id: str, ts: float, stats: dict, host_config: dict) -> Any:
    cpu = stats.get("cpu_stats") or {}
    limit = (host_config.get("NanoCpus") or 0) / 1e9
    if not limit and host_config.get("CpuQuota") and host_config.get("CpuPeriod"):
        limit = host_config["CpuQuota"] / host_config["CpuPeriod"]
    if not limit:
        limit = float(cpu.get("online_cpus") or 0)
    mem = stats.get("memory_stats") or {}
    detail = mem.get("stats") or {}
    used = int(mem.get("usage") or 0) - int(detail.get("inactive_file", detail.get("total_inactive_file", 0)) or 0)
    nets = (stats.get("networks") or {}).values()
    blk = (stats.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []
    reads = sum(int(e.get("value") or 0) for e in blk if str(e.get("op", "")).lower() == "read")
    writes = sum(int(e.get("value") or 0) for e in blk if str(e.get("op", "")).lower() == "write")
    return cls(
        env_id=env_id, ts=ts, cpu_seconds=int((cpu.get("cpu_usage") or {}).get("total_usage") or 0) / 1e9,
        cpu_limit_cores=float(limit), memory_bytes=max(0, used), memory_limit_bytes=int(mem.get("limit") or 0),
        net_rx_bytes=sum(int(n.get("rx_bytes") or 0) for n in nets),
        net_tx_bytes=sum(int(n.get("tx_bytes") or 0) for n in (stats.get("networks") or {}).values()),
        disk_read_bytes=reads, disk_write_bytes=writes,
    )


class ImagePullFailed(DockerException):
    """Pulling an image failed. Users are told only that (``_explain``): the daemon's
    reason can carry probes of the host's network (addresses, DNS answers, TLS errors);
    operators find it in the agent's log."""

    def __init__(self, image: str, cause: Exception) -> None:
        super().__init__(f"image {image} could not be pulled")
        self.image = image
        logging.getLogger("remotegpu.runtime.docker").warning("pulling %s failed: %s", image, cause)


def _explain(exc: DockerException) -> str:
    if isinstance(exc, ImagePullFailed):
        return f"image {exc.image} could not be pulled"
    if isinstance(exc, ImageNotFound):
        return f"image not found ({exc.explanation or exc}); build it with `make image` or push it"
    if isinstance(exc, APIError):
        return str(exc.explanation or exc)
    return str(exc)
