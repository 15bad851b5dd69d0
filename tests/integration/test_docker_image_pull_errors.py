"""A failed pull tells the user only that the image could not be pulled: the daemon's
reason (registry addresses, DNS answers, connection errors: probes of the GPU host's
network) stays in the agent's log. Real Docker; this machine reaches no registry."""

from __future__ import annotations

import time
import uuid

import pytest

from remotegpu.adapters.runtime.docker_runtime import DockerRuntime
from remotegpu.application.environments.ports import EnvironmentRuntimeError, RuntimeSpec
from tests.support.components import docker_with_image, remove_scope


@pytest.fixture
def docker():
    return docker_with_image("remotegpu/base:latest")


async def test_pull_failure_message_carries_no_network_detail(docker, caplog):
    scope = f"pull{int(time.time())}"
    runtime = DockerRuntime(docker, scope=scope)
    image = f"registry.invalid:5000/remotegpu/not-here-{uuid.uuid4().hex[:8]}:1"
    spec = RuntimeSpec(env_id=str(uuid.uuid4()), image=image, cpu_cores=1.0, memory_gib=1.0)
    try:
        with pytest.raises(EnvironmentRuntimeError) as err:
            await runtime.ensure_running(spec)
    finally:
        remove_scope(docker, scope)
    message = str(err.value)
    assert message.endswith(f"image {image} could not be pulled"), message
    for probe in ("dial", "lookup", "tcp", "no such host", "connection", "Get ", "https://"):
        assert probe not in message, message
    # The operator still learns why.
    assert any("pulling" in r.getMessage() and image in r.getMessage() for r in caplog.records)


async def test_the_agents_background_pull_says_as_little(docker):
    """The same for the agent's own pull (issue 15: in the background, with progress)."""
    runtime = DockerRuntime(docker, scope=f"pull{int(time.time())}")
    image = f"registry.invalid:5000/remotegpu/not-here-{uuid.uuid4().hex[:8]}:1"
    with pytest.raises(EnvironmentRuntimeError) as err:
        await runtime.pull_image(image, ("registry.invalid:5000", "u", "p"), lambda line: None)
    message = str(err.value)
    assert message == f"image {image} could not be pulled", message
