"""The EnvironmentRuntime contract, run against the in-memory, the Docker and the Kubernetes runtime.

The Kubernetes case runs against a real kube-apiserver, scheduler and controller-manager
(tests/support/kube_cluster.py, with a kubelet stand-in): its "disk" is the directory the
stand-in provisioned for the environment's PersistentVolumeClaim.

The Docker case needs a daemon (skipped locally without one, a failure in CI) and the
base image, which is built once per session by deploy/images/build-base.sh if missing.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

import pytest

from remotegpu.adapters.runtime.docker_images import list_images
from remotegpu.adapters.runtime import InMemoryRuntime
from remotegpu.adapters.runtime.docker_hardening import ADDED_CAPABILITIES, DEFAULT_PIDS_LIMIT
from remotegpu.application.environments.ports import (
    LABEL_ENV_ID,
    LABEL_MANAGED,
    EnvironmentRuntime,
    EnvironmentRuntimeError,
    RuntimeSpec,
    RuntimeWithExec,
)
from tests.support.components import docker_client

ROOT = Path(__file__).resolve().parents[2]
BASE_IMAGE = os.environ.get("REMOTEGPU_BASE_IMAGE", "remotegpu/base:latest")
SCOPE = "contract-tests"
PROBE = "/root/workspace/probe.txt"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Harness:
    """One runtime under test, with the few things the contract cannot express
    through the port itself (reading and writing the disk, planting strangers)."""

    kind: str
    runtime: Any
    image: str
    write_file: Callable[[str, str, str], Awaitable[None]]
    read_file: Callable[[str, str], Awaitable[str | None]]
    plant_unmanaged: Callable[[str], None]
    env_ids: list[str] = field(default_factory=list)
    workspaces: list[str] = field(default_factory=list)  # workspace ids its specs named

    def new_env_id(self) -> str:
        env_id = f"ct-{uuid.uuid4().hex[:12]}"
        self.env_ids.append(env_id)
        return env_id

    def spec(self, env_id: str, **overrides: Any) -> RuntimeSpec:
        values: dict[str, Any] = dict(
            env_id=env_id,
            image=self.image,
            cpu_cores=0.5,
            memory_gib=0.5,
            ports={22: free_port()},
            env={"REMOTEGPU_JUPYTER_ENABLED": "0"},
        )
        values.update(overrides)
        if values.get("workspace_id"):
            self.workspaces.append(values["workspace_id"])
        return RuntimeSpec(**values)


# -- harnesses ------------------------------------------------------------------


def memory_harness() -> Harness:
    runtime = InMemoryRuntime()

    async def write_file(env_id: str, path: str, content: str) -> None:
        runtime.write_file(env_id, path, content)

    async def read_file(env_id: str, path: str) -> str | None:
        return runtime.disk(env_id).get(path)

    return Harness("memory", runtime, "remotegpu/base:latest", write_file, read_file, lambda name: None)


@pytest.fixture(scope="session")
def base_image() -> str:
    client = docker_client()
    try:
        client.images.get(BASE_IMAGE)
    except Exception:  # noqa: BLE001 - missing image: build it once for the session
        build = subprocess.run([str(ROOT / "deploy/images/build-base.sh")], capture_output=True, text=True)
        if build.returncode != 0:
            pytest.fail(f"building {BASE_IMAGE} failed:\n{build.stdout}\n{build.stderr}", pytrace=False)
    return BASE_IMAGE


def docker_harness(client: Any, image: str) -> Harness:
    from remotegpu.adapters.runtime.docker_runtime import DockerRuntime

    runtime = DockerRuntime(client, scope=SCOPE, bind_address="127.0.0.1", stop_timeout=5)

    async def write_file(env_id: str, path: str, content: str) -> None:
        code, out = await runtime.exec(env_id, ["sh", "-c", f"printf %s {shlex.quote(content)} > {shlex.quote(path)}"])
        assert code == 0, out

    async def read_file(env_id: str, path: str) -> str | None:
        code, out = await runtime.exec(env_id, ["cat", path])
        return out if code == 0 else None

    def plant_unmanaged(name: str) -> None:
        # Carries an env id label but not remotegpu.managed: not ours to list.
        client.containers.create(image, name=name, labels={LABEL_ENV_ID: name}, detach=True)

    return Harness("docker", runtime, image, write_file, read_file, plant_unmanaged)


def docker_cleanup(client: Any, harness: Harness, planted: list[str]) -> None:
    from remotegpu.adapters.runtime.docker_runtime import DockerRuntime

    names = [DockerRuntime.container_name(e) for e in harness.env_ids] + planted
    for name in names:
        try:
            client.containers.get(name).remove(force=True)
        except Exception:  # noqa: BLE001 - already gone
            pass
    for env_id in harness.env_ids:
        try:
            client.volumes.get(DockerRuntime.volume_name(env_id)).remove(force=True)
        except Exception:  # noqa: BLE001 - already gone
            pass
        for image in list_images(client, "rgpu-snapshot", {"label": [f"{LABEL_ENV_ID}={env_id}"]}):
            for ref in image.tags:
                client.images.remove(ref)
    networks = harness.runtime._networks  # this harness's networks (docker_network.py), if unused
    for tenant in [*(networks.tenant_of(None, e) for e in harness.env_ids), *harness.workspaces]:
        for network in client.networks.list(names=[networks.name_for(tenant)]):
            if not client.containers.list(all=True, filters={"network": network.name}):
                try:
                    network.remove()
                except Exception:  # noqa: BLE001 - a parallel run attached to it meanwhile
                    pass


@pytest.fixture
def docker_h(request: pytest.FixtureRequest):
    """A Docker harness that removes every container and volume its test made."""
    client = docker_client()
    h = docker_harness(client, request.getfixturevalue("base_image"))
    planted: list[str] = []
    plant = h.plant_unmanaged

    def plant_and_remember(name: str) -> None:
        planted.append(name)
        plant(name)

    h.plant_unmanaged = plant_and_remember
    try:
        yield h
    finally:
        docker_cleanup(client, h, planted)


@pytest.fixture(scope="session")
def kube_namespace(kube_cluster) -> str:
    return kube_cluster.create_namespace(f"contract-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def kube_h(request: pytest.FixtureRequest):
    """A Kubernetes harness (its own scope label) that removes everything its test made."""
    from kubernetes import client

    from remotegpu.adapters.runtime.kubernetes_runtime import KubernetesRuntime

    cluster = request.getfixturevalue("kube_cluster")
    namespace = request.getfixturevalue("kube_namespace")
    runtime = KubernetesRuntime(cluster.api_client(), namespace=namespace, scope=f"ct-{uuid.uuid4().hex[:8]}",
                                storage_class=cluster.storage_class, start_timeout=30, stop_grace_seconds=2)
    core = client.CoreV1Api(cluster.api_client())
    planted: list[str] = []

    def disk(env_id: str, path: str) -> Path | None:
        volume = cluster.volume_dir(namespace, runtime.name_for(env_id))
        return None if volume is None else volume / Path(path).relative_to("/root/workspace")

    async def write_file(env_id: str, path: str, content: str) -> None:
        target = await asyncio.to_thread(disk, env_id, path)
        assert target is not None, f"{env_id} has no bound volume"
        target.write_text(content)

    async def read_file(env_id: str, path: str) -> str | None:
        target = await asyncio.to_thread(disk, env_id, path)
        return target.read_text() if target is not None and target.exists() else None

    def plant_unmanaged(name: str) -> None:
        planted.append(name)
        core.create_namespaced_pod(namespace, client.V1Pod(
            metadata=client.V1ObjectMeta(name=name, labels={LABEL_ENV_ID: name, "remotegpu.scope": runtime.scope}),
            spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="stranger:latest")])))

    h = Harness("kubernetes", runtime, BASE_IMAGE, write_file, read_file, plant_unmanaged)
    try:
        yield h
    finally:
        for env_id in h.env_ids:
            runtime._remove(env_id)  # the blocking half of ``remove``
        for name in planted:
            try:
                core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
            except Exception:  # noqa: BLE001 - already gone
                pass
        runtime.close()


@pytest.fixture(params=["memory", "docker", "kubernetes"])
def harness(request: pytest.FixtureRequest) -> Harness:
    if request.param == "memory":
        return memory_harness()
    if request.param == "kubernetes":
        return request.getfixturevalue("kube_h")
    return request.getfixturevalue("docker_h")


# -- the contract -----------------------------------------------------------------


def test_the_runtimes_offer_exec(harness: Harness) -> None:
    assert isinstance(harness.runtime, RuntimeWithExec)
    runtime: EnvironmentRuntime = harness.runtime  # type-checks against the port
    assert runtime is not None


async def test_ensure_running_creates_the_environment_and_is_idempotent(harness: Harness) -> None:
    env_id = harness.new_env_id()
    spec = harness.spec(env_id)

    first = await harness.runtime.ensure_running(spec)
    again = await harness.runtime.ensure_running(spec)

    assert first.status == "running" and first.container_id
    assert first.ports == spec.ports
    assert first.started_at is not None
    assert again.container_id == first.container_id
    assert again.started_at == first.started_at
    assert (await harness.runtime.inspect(env_id)).status == "running"


async def test_stopping_keeps_the_disk_and_starting_again_finds_it(harness: Harness) -> None:
    env_id = harness.new_env_id()
    spec = harness.spec(env_id)
    await harness.runtime.ensure_running(spec)
    await harness.write_file(env_id, PROBE, "kept across stop")

    began = time.monotonic()
    await harness.runtime.stop(env_id)
    stop_seconds = time.monotonic() - began
    stopped = await harness.runtime.inspect(env_id)
    await harness.runtime.stop(env_id)  # stopping twice is silent
    started = await harness.runtime.ensure_running(spec)

    assert stopped.status == "stopped" and stopped.ports == {}
    # Not a benchmark: only that stop does not sit out a long grace period (Docker's
    # default is 10 s); a loaded CI machine took 3.3 s for what takes 0.5 s when quiet.
    assert stop_seconds < 8, f"stop took {stop_seconds:.1f}s"
    assert started.status == "running"
    assert await harness.read_file(env_id, PROBE) == "kept across stop"


async def test_starting_with_other_ports_and_gpus_keeps_the_disk(harness: Harness) -> None:
    env_id = harness.new_env_id()
    await harness.runtime.ensure_running(harness.spec(env_id, gpu_indices=[0], fake_gpus=True))
    await harness.write_file(env_id, PROBE, "same disk")
    await harness.runtime.stop(env_id)

    moved = harness.spec(env_id, gpu_indices=[2, 3], gpu_uuids=["GPU-fake-2", "GPU-fake-3"], fake_gpus=True)
    state = await harness.runtime.ensure_running(moved)

    assert state.status == "running"
    assert state.ports == moved.ports
    assert await harness.read_file(env_id, PROBE) == "same disk"
    if harness.kind == "docker":
        code, out = await harness.runtime.exec(env_id, ["printenv", "CUDA_VISIBLE_DEVICES"])
        assert (code, out.strip()) == (0, "2,3")


async def test_a_running_environment_is_left_alone_when_its_spec_changes(harness: Harness) -> None:
    env_id = harness.new_env_id()
    first = await harness.runtime.ensure_running(harness.spec(env_id))

    again = await harness.runtime.ensure_running(harness.spec(env_id))  # other host port

    assert again.container_id == first.container_id
    assert again.ports == first.ports


async def test_remove_leaves_nothing_behind(harness: Harness) -> None:
    env_id = harness.new_env_id()
    await harness.runtime.ensure_running(harness.spec(env_id))
    await harness.write_file(env_id, PROBE, "gone soon")

    await harness.runtime.remove(env_id)

    assert await harness.runtime.inspect(env_id) is None
    assert env_id not in {s.env_id for s in await harness.runtime.list()}
    # A new environment of the same id starts on an empty disk.
    await harness.runtime.ensure_running(harness.spec(env_id))
    assert await harness.read_file(env_id, PROBE) is None
    await harness.runtime.remove(env_id)
    if harness.kind == "docker":
        client = harness.runtime._client
        assert not client.containers.list(all=True, filters={"name": f"rgpu-env-{env_id}"})
        assert not client.volumes.list(filters={"name": f"rgpu-vol-{env_id}"})
    if harness.kind == "kubernetes":
        assert await asyncio.to_thread(kube_leftovers, harness.runtime, env_id) == []


async def test_list_finds_managed_environments_and_ignores_others(harness: Harness) -> None:
    running, stopped = harness.new_env_id(), harness.new_env_id()
    await harness.runtime.ensure_running(harness.spec(running))
    await harness.runtime.ensure_running(harness.spec(stopped))
    await harness.runtime.stop(stopped)
    stranger = f"ct-stranger-{uuid.uuid4().hex[:8]}"
    harness.plant_unmanaged(stranger)

    listed = {s.env_id: s for s in await harness.runtime.list()}

    assert listed[running].status == "running"
    assert listed[stopped].status == "stopped"
    assert stranger not in listed


async def test_unknown_environments_are_absent_and_silent(harness: Harness) -> None:
    env_id = harness.new_env_id()

    assert await harness.runtime.inspect(env_id) is None
    await harness.runtime.stop(env_id)
    await harness.runtime.remove(env_id)
    with pytest.raises(EnvironmentRuntimeError):
        await harness.runtime.exec(env_id, ["true"])


def kube_leftovers(runtime: Any, env_id: str) -> list[str]:
    """Every object of the environment still in its namespace (by its labels)."""
    from kubernetes import client

    core = client.CoreV1Api(runtime._api)
    selector = f"{LABEL_ENV_ID}={env_id},remotegpu.scope={runtime.scope}"
    found = []
    for kind, lister in (("pod", core.list_namespaced_pod), ("pvc", core.list_namespaced_persistent_volume_claim),
                         ("service", core.list_namespaced_service), ("secret", core.list_namespaced_secret)):
        found += [f"{kind}/{o.metadata.name}" for o in lister(runtime.namespace, label_selector=selector).items]
    return found


# -- Docker only: what the container really looks like ----------------------------


async def test_the_container_has_its_limits_labels_and_fake_gpus(docker_h: Harness) -> None:
    h = docker_h
    env_id = h.new_env_id()
    spec = h.spec(env_id, cpu_cores=1.5, memory_gib=0.75, gpu_indices=[0, 1], fake_gpus=True,
                  gpu_uuids=["GPU-a", "GPU-b"], labels={"remotegpu.workspace": "ws-1"}, disk_gib=75,
                  workspace_id="ws-1")
    await h.runtime.ensure_running(spec)

    attrs = h.runtime._client.containers.get(f"rgpu-env-{env_id}").attrs
    env = dict(item.split("=", 1) for item in attrs["Config"]["Env"])

    host = attrs["HostConfig"]
    assert host["NanoCpus"] == 1_500_000_000
    assert host["Memory"] == host["MemorySwap"] == int(0.75 * 1024**3)  # no swap
    assert host["CapDrop"] == ["ALL"] and "NET_RAW" not in host["CapAdd"]
    assert sorted(host["CapAdd"]) == sorted(ADDED_CAPABILITIES)
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["PidsLimit"] == DEFAULT_PIDS_LIMIT
    assert host["NetworkMode"] == "rgpu-net-contract-tests-ws-1"  # the workspace's network
    assert not attrs["HostConfig"].get("DeviceRequests")
    labels = attrs["Config"]["Labels"]
    assert labels[LABEL_MANAGED] == "true" and labels[LABEL_ENV_ID] == env_id
    assert labels["remotegpu.workspace"] == "ws-1"
    assert env["CUDA_VISIBLE_DEVICES"] == env["NVIDIA_VISIBLE_DEVICES"] == "0,1"
    mounts = {m["Destination"]: m for m in attrs["Mounts"]}
    assert mounts["/root/workspace"]["Name"] == f"rgpu-vol-{env_id}"
    # The disk size is recorded on the volume (not enforced: see DockerRuntime's docstring).
    volume_labels = h.runtime._client.volumes.get(f"rgpu-vol-{env_id}").attrs["Labels"]
    assert volume_labels["remotegpu.disk_gib"] == "75" and volume_labels[LABEL_ENV_ID] == env_id


async def test_real_gpus_are_requested_by_uuid(docker_h: Harness) -> None:
    h = docker_h
    env_id = h.new_env_id()
    spec = h.spec(env_id, gpu_uuids=["GPU-1111"], gpu_indices=[0], fake_gpus=False)
    # Without NVIDIA's runtime the start fails, but the request is on the container.
    try:
        await h.runtime.ensure_running(spec)
    except EnvironmentRuntimeError:
        pass
    attrs = h.runtime._client.containers.get(f"rgpu-env-{env_id}").attrs
    (request,) = attrs["HostConfig"]["DeviceRequests"]
    assert request["DeviceIDs"] == ["GPU-1111"]
    assert request["Capabilities"] == [["gpu"]]


async def test_the_published_ssh_port_answers_with_an_ssh_banner(docker_h: Harness) -> None:
    h = docker_h
    env_id = h.new_env_id()
    state = await h.runtime.ensure_running(h.spec(env_id))

    banner = await read_banner("127.0.0.1", state.ports[22])

    assert banner.startswith(b"SSH-2.0-OpenSSH")


async def test_jupyterlab_answers_inside_the_environment(docker_h: Harness) -> None:
    h = docker_h
    env_id = h.new_env_id()
    base = "/"  # what the platform sets: the app has a host of its own
    spec = h.spec(env_id, env={"REMOTEGPU_JUPYTER_TOKEN": "t0ken", "REMOTEGPU_JUPYTER_BASE_URL": base})
    await h.runtime.ensure_running(spec)
    url = f"http://127.0.0.1:8888{base}api/status"

    status = None
    for _ in range(60):
        code, out = await h.runtime.exec(env_id, ["curl", "-sf", "-H", "Authorization: token t0ken", url])
        if code == 0:
            status = json.loads(out)
            break
        await asyncio.sleep(0.5)

    assert status is not None, "JupyterLab did not answer within 30 s"
    assert "started" in status
    code, _ = await h.runtime.exec(env_id, ["curl", "-sf", url])
    assert code != 0, "the API must refuse requests without the token"


async def read_banner(host: str, port: int, timeout: float = 20.0) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 2)
            try:
                line = await asyncio.wait_for(reader.readline(), 3)
            finally:
                writer.close()
            if line:
                return line
        except (OSError, asyncio.TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"no SSH banner on {host}:{port} within {timeout:.0f}s")
        await asyncio.sleep(0.3)


async def test_a_same_named_stranger_is_never_touched(docker_h: Harness) -> None:
    h = docker_h
    env_id = h.new_env_id()
    h.plant_unmanaged(f"rgpu-env-{env_id}")

    await h.runtime.stop(env_id)
    await h.runtime.remove(env_id)
    with pytest.raises(EnvironmentRuntimeError, match="already in use"):
        await h.runtime.ensure_running(h.spec(env_id))

    client = h.runtime._client
    assert client.containers.get(f"rgpu-env-{env_id}").labels.get(LABEL_MANAGED) is None
    assert await h.runtime.inspect(env_id) is None, "a failed first start leaves no disk"
