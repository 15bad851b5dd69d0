"""Stop/start keeps the whole disk on real Docker: not only /root/workspace (the volume)
but everything the user changed in the container — a file in /opt, a ``pip install``
into the image's venv (/opt/jupyter), a dotfile in /root.

Same spec: the stopped container is started again (same container id). Other GPUs:
the container is committed to a snapshot and recreated from it, so the files are
still there, and exactly one snapshot image is left (removed with the environment).
"""

from __future__ import annotations

import os
import uuid

import pytest

from remotegpu.adapters.runtime.docker_images import list_images
from remotegpu.adapters.runtime.docker_runtime import SNAPSHOT_REPOSITORY, DockerRuntime
from remotegpu.application.environments.ports import RuntimeSpec
from tests.support.components import docker_with_image, remove_scope
from tests.support.live_server import free_port

IMAGE = os.environ.get("REMOTEGPU_BASE_IMAGE", "remotegpu/base:latest")

# Builds a tiny wheel (no network, no setuptools in the image) that pip then installs
# into the image's venv: a real `pip install`, like a user's.
MAKE_WHEEL = r'''
import base64, hashlib, zipfile
files = {
    "rgpu_probe/__init__.py": "VALUE = 42\n",
    "rgpu_probe-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: rgpu-probe\nVersion: 1.0\n",
    "rgpu_probe-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: remotegpu-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = []
for name, text in files.items():
    digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
    record.append(f"{name},sha256={digest},{len(text.encode())}")
record.append("rgpu_probe-1.0.dist-info/RECORD,,")
files["rgpu_probe-1.0.dist-info/RECORD"] = "\n".join(record) + "\n"
with zipfile.ZipFile("/tmp/rgpu_probe-1.0-py3-none-any.whl", "w") as wheel:
    for name, text in files.items():
        wheel.writestr(name, text)
'''

CHANGE_THE_SYSTEM = [
    "sh", "-c",
    "set -e; mkdir -p /opt/tool && echo opt-kept > /opt/tool/data.txt; echo 'alias ll=\"ls -l\"' > /root/.my_dotfile; "
    "echo workspace-kept > /root/workspace/w.txt; python3 -c \"$0\"; /opt/jupyter/bin/pip install --no-index -q "
    "/tmp/rgpu_probe-1.0-py3-none-any.whl",
]
CHECK_THE_SYSTEM = [
    "sh", "-c",
    "cat /opt/tool/data.txt /root/.my_dotfile /root/workspace/w.txt && /opt/jupyter/bin/python -c "
    "'import rgpu_probe; print(\"pip\", rgpu_probe.VALUE)'",
]
EXPECTED = "opt-kept\nalias ll=\"ls -l\"\nworkspace-kept\npip 42\n"


def change_the_system() -> list[str]:
    argv = list(CHANGE_THE_SYSTEM)
    argv.insert(3, MAKE_WHEEL)  # $0 of the script
    return argv


@pytest.fixture
def docker():
    return docker_with_image(IMAGE)


@pytest.fixture
def runtime(docker):
    scope = f"disk-{uuid.uuid4().hex[:8]}"
    yield DockerRuntime(docker, scope=scope, bind_address="127.0.0.1", stop_timeout=2)
    remove_scope(docker, scope)


def spec(env_id: str, ports: dict[int, int], gpus: list[int], **kw) -> RuntimeSpec:
    return RuntimeSpec(
        env_id=env_id, image=IMAGE, cpu_cores=0.5, memory_gib=0.5, gpu_indices=gpus,
        gpu_uuids=[f"GPU-fake-{i}" for i in gpus], fake_gpus=True, ports=ports,
        env={"REMOTEGPU_JUPYTER_ENABLED": "0", **kw.pop("env", {})}, labels={"remotegpu.generation": "0"}, **kw,
    )


def snapshots(docker, env_id: str) -> list[str]:
    return [t for i in list_images(docker, SNAPSHOT_REPOSITORY) for t in i.tags if t.startswith(f"{SNAPSHOT_REPOSITORY}:{env_id}-")]


async def check(runtime: DockerRuntime, env_id: str) -> None:
    code, out = await runtime.exec(env_id, CHECK_THE_SYSTEM)
    assert (code, out) == (0, EXPECTED)


async def test_stop_start_keeps_every_file_and_reuses_the_container(runtime, docker):
    env_id = f"disk-{uuid.uuid4().hex[:10]}"
    ports = {22: free_port()}
    first = await runtime.ensure_running(spec(env_id, ports, [0]))
    code, out = await runtime.exec(env_id, change_the_system())
    assert code == 0, out
    await check(runtime, env_id)

    await runtime.stop(env_id)
    again = await runtime.ensure_running(spec(env_id, ports, [0]))

    assert again.container_id == first.container_id, "same spec: the stopped container is started, not recreated"
    assert again.ports == ports
    await check(runtime, env_id)
    assert snapshots(docker, env_id) == []


async def test_other_gpus_recreate_the_container_from_its_own_files(runtime, docker):
    env_id = f"disk-{uuid.uuid4().hex[:10]}"
    ports = {22: free_port()}
    first = await runtime.ensure_running(spec(env_id, ports, [0], env={"GONE_LATER": "1"}))
    code, out = await runtime.exec(env_id, change_the_system())
    assert code == 0, out

    await runtime.stop(env_id)
    moved = await runtime.ensure_running(spec(env_id, ports, [2, 3]))

    assert moved.container_id != first.container_id
    await check(runtime, env_id)
    code, out = await runtime.exec(env_id, ["sh", "-c", 'echo "$CUDA_VISIBLE_DEVICES|${GONE_LATER-unset}"'])
    assert (code, out.strip()) == (0, "2,3|"), "the new GPUs are visible; a dropped variable is emptied"
    assert len(snapshots(docker, env_id)) == 1

    # Once more: still one snapshot (the previous one is dropped), still every file.
    await runtime.stop(env_id)
    await runtime.ensure_running(spec(env_id, ports, [1]))
    await check(runtime, env_id)
    assert len(snapshots(docker, env_id)) == 1

    await runtime.remove(env_id)
    assert snapshots(docker, env_id) == []
    assert not docker.containers.list(all=True, filters={"label": f"remotegpu.env_id={env_id}"})
    assert not docker.volumes.list(filters={"label": f"remotegpu.env_id={env_id}"})


async def test_a_recreation_cut_short_loses_nothing(runtime, docker, monkeypatch):
    """The agent dies (here: creating fails) after the commit and the removal of the old
    container: the next start finds no container and comes back from the snapshot."""
    env_id = f"disk-{uuid.uuid4().hex[:10]}"
    ports = {22: free_port()}
    await runtime.ensure_running(spec(env_id, ports, [0]))
    code, out = await runtime.exec(env_id, change_the_system())
    assert code == 0, out
    await runtime.stop(env_id)

    real_create = runtime._create_container

    def fail_once(*args, **kwargs):
        monkeypatch.setattr(runtime, "_create_container", real_create)
        raise RuntimeError("agent died here")

    monkeypatch.setattr(runtime, "_create_container", fail_once)
    with pytest.raises(RuntimeError, match="agent died here"):
        await runtime.ensure_running(spec(env_id, ports, [1]))
    assert not docker.containers.list(all=True, filters={"label": f"remotegpu.env_id={env_id}"})
    assert len(snapshots(docker, env_id)) == 1

    await runtime.ensure_running(spec(env_id, ports, [1]))
    await check(runtime, env_id)


async def test_a_deep_snapshot_is_flattened_and_keeps_every_file(runtime, docker):
    """Each recreation stacks one layer; past the limit the files are flattened into a
    one-layer snapshot with the base image's config (it still starts, sshd answers)."""
    runtime.max_snapshot_layers = 2  # base image: 1 layer; one commit: 2; the next one flattens
    env_id = f"disk-{uuid.uuid4().hex[:10]}"
    ports = {22: free_port()}
    await runtime.ensure_running(spec(env_id, ports, [0]))
    code, out = await runtime.exec(env_id, change_the_system())
    assert code == 0, out
    layers = []
    for gpu in (1, 2, 3):
        await runtime.stop(env_id)
        await runtime.ensure_running(spec(env_id, ports, [gpu]))
        await check(runtime, env_id)
        (snapshot,) = snapshots(docker, env_id)
        layers.append(len(docker.images.get(snapshot).attrs["RootFS"]["Layers"]))
    assert layers == [2, 1, 2]
    code, out = await runtime.exec(env_id, ["sh", "-c", 'echo "$CUDA_VISIBLE_DEVICES $PATH"; pgrep -x sshd >/dev/null && echo sshd'])
    assert code == 0 and out.split() == ["3", docker.images.get(IMAGE).attrs["Config"]["Env"][0].split("=", 1)[1], "sshd"]
