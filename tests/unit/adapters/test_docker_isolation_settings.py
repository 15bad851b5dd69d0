"""What DockerRuntime asks Docker for, on a fake client: GPU visibility comes from the
allocation only (NVIDIA's runtime branch, which this machine has no GPU for), the
hardening settings, the workspace network; and the operator's settings parse strictly."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from docker.errors import NotFound

from remotegpu.adapters.runtime.docker_hardening import ADDED_CAPABILITIES, Hardening, has_nvidia_runtime
from remotegpu.adapters.runtime.docker_runtime import DockerRuntime
from remotegpu.adapters.runtime.egress import EgressPolicy, EgressRules
from remotegpu.adapters.runtime.select import docker_runtime
from remotegpu.application.environments.ports import RuntimeSpec

NVIDIA_INFO = {"DefaultRuntime": "nvidia", "Runtimes": {"nvidia": {"path": "nvidia-container-runtime"}, "runc": {}}}
PLAIN_INFO = {"DefaultRuntime": "runc", "Runtimes": {"runc": {"path": "runc"}}}


class FakeNetwork:
    def __init__(self, name: str, labels: dict[str, str]) -> None:
        self.name, self.attrs = name, {"Labels": labels}


class FakeNetworks:
    def __init__(self) -> None:
        self.made: dict[str, FakeNetwork] = {}
        self.options: dict[str, dict[str, str]] = {}

    def get(self, name: str) -> FakeNetwork:
        if name not in self.made:
            raise NotFound("no such network")
        return self.made[name]

    def create(self, name: str, *, options: dict[str, str], labels: dict[str, str], **_: Any) -> FakeNetwork:
        self.made[name] = FakeNetwork(name, labels)
        self.options[name] = options
        return self.made[name]


class FakeContainers:
    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []

    def create(self, **kwargs: Any) -> dict[str, Any]:
        self.created.append(kwargs)
        return kwargs


class FakeDocker:
    def __init__(self, info: dict[str, Any]) -> None:
        self._info = info
        self.networks = FakeNetworks()
        self.containers = FakeContainers()

    def info(self) -> dict[str, Any]:
        return self._info


def create(info: dict[str, Any], spec: RuntimeSpec) -> dict[str, Any]:
    docker = FakeDocker(info)
    runtime = DockerRuntime(docker, scope="unit", hardening=Hardening(pids_limit=512))  # type: ignore[arg-type]
    runtime._create_container(spec, {})
    (kwargs,) = docker.containers.created
    return kwargs


def spec(**kwargs: Any) -> RuntimeSpec:
    return RuntimeSpec(env_id="env-1", image="img", memory_gib=2, cpu_cores=1.5, **kwargs)


# A spec (as an older server, or any caller of the runtime, could send) or an image
# trying to widen what the container sees.
GREEDY = {"NVIDIA_VISIBLE_DEVICES": "all", "NVIDIA_MIG_MONITOR_DEVICES": "all", "nvidia_driver_capabilities": "all",
          "HOME_MADE": "kept"}


def test_on_an_nvidia_host_a_gpu_less_container_sees_no_gpu():
    kwargs = create(NVIDIA_INFO, spec(env=GREEDY))
    env = kwargs["environment"]
    assert env["NVIDIA_VISIBLE_DEVICES"] == "void"
    assert "NVIDIA_MIG_MONITOR_DEVICES" not in env and "nvidia_driver_capabilities" not in env
    assert env["HOME_MADE"] == "kept"
    assert kwargs["device_requests"] is None


def test_on_an_nvidia_host_a_container_sees_exactly_its_gpus():
    kwargs = create(NVIDIA_INFO, spec(gpu_uuids=["GPU-a", "GPU-b"], gpu_indices=[0, 3], env=GREEDY))
    assert kwargs["environment"]["NVIDIA_VISIBLE_DEVICES"] == "GPU-a,GPU-b"
    (request,) = kwargs["device_requests"]
    assert request["DeviceIDs"] == ["GPU-a", "GPU-b"]


def test_fake_gpus_on_an_nvidia_host_expose_no_real_device():
    env = create(NVIDIA_INFO, spec(gpu_uuids=["fake-0", "fake-1"], gpu_indices=[0, 1], fake_gpus=True))["environment"]
    assert env == {"CUDA_VISIBLE_DEVICES": "0,1", "NVIDIA_VISIBLE_DEVICES": "void"}


def test_without_nvidia_runtime_fake_gpus_are_advertised_and_gpu_less_containers_still_get_void():
    env = create(PLAIN_INFO, spec(gpu_indices=[0, 1], fake_gpus=True))["environment"]
    assert env == {"CUDA_VISIBLE_DEVICES": "0,1", "NVIDIA_VISIBLE_DEVICES": "0,1"}
    assert create(PLAIN_INFO, spec(env={"A": "1"}))["environment"] == {"A": "1", "NVIDIA_VISIBLE_DEVICES": "void"}
    # A host with a fake inventory starting a GPU-less environment: nothing to advertise.
    assert create(PLAIN_INFO, spec(fake_gpus=True))["environment"] == {"NVIDIA_VISIBLE_DEVICES": "void"}


@pytest.mark.parametrize("info, expected", [
    (NVIDIA_INFO, True),
    ({"DefaultRuntime": "runc", "Runtimes": {"runc": {}, "nvidia": {}}}, True),
    (PLAIN_INFO, False),
    ({}, False),
])
def test_nvidia_runtime_detection(info, expected):
    assert has_nvidia_runtime(info) is expected


def test_the_hardening_settings_and_the_workspace_network():
    kwargs = create(PLAIN_INFO, spec(workspace_id="ws-9"))
    assert kwargs["cap_drop"] == ["ALL"] and kwargs["cap_add"] == sorted(ADDED_CAPABILITIES)
    assert "NET_RAW" not in kwargs["cap_add"] and "SYS_ADMIN" not in kwargs["cap_add"]
    assert kwargs["security_opt"] == ["no-new-privileges"]
    assert kwargs["pids_limit"] == 512
    assert kwargs["mem_limit"] == kwargs["memswap_limit"] == 2 * 1024**3
    assert kwargs["nano_cpus"] == 1_500_000_000
    assert kwargs["network"] == "rgpu-net-unit-ws-9"


def test_each_workspace_gets_its_own_bridge_and_no_workspace_a_network_of_its_own():
    docker = FakeDocker(PLAIN_INFO)
    runtime = DockerRuntime(docker, scope="unit")  # type: ignore[arg-type]
    for env_id, workspace in (("e1", "ws-1"), ("e2", "ws-1"), ("e3", "ws-2"), ("e4", None)):
        runtime._create_container(RuntimeSpec(env_id=env_id, image="img", workspace_id=workspace), {})
    networks = [c["network"] for c in docker.containers.created]
    assert networks == ["rgpu-net-unit-ws-1", "rgpu-net-unit-ws-1", "rgpu-net-unit-ws-2", "rgpu-net-unit-env-e4"]
    bridges = {o["com.docker.network.bridge.name"] for o in docker.networks.options.values()}
    assert len(bridges) == 3 and all(len(b) <= 15 for b in bridges)  # the kernel's limit on interface names
    assert len({b[:7] for b in bridges}) == 1  # one prefix per scope: what the egress rules match


def test_operator_settings_parse_strictly():
    assert EgressPolicy.parse("10.0.0.0/8, 192.168.1.7/16", "false") == EgressPolicy(("10.0.0.0/8", "192.168.0.0/16"), False)
    assert EgressPolicy.parse("", "") == EgressPolicy((), True)
    with pytest.raises(ValueError, match="REMOTEGPU_EGRESS_DENY: 'intranet'"):
        EgressPolicy.parse("intranet")
    with pytest.raises(ValueError, match="REMOTEGPU_EGRESS_INTERNET"):
        EgressPolicy.parse("", "sometimes")
    with pytest.raises(ValueError, match="REMOTEGPU_PIDS_LIMIT"):
        docker_runtime("unit", "127.0.0.1", {"REMOTEGPU_PIDS_LIMIT": "10"})
    with pytest.raises(ValueError, match="REMOTEGPU_PIDS_LIMIT"):
        docker_runtime("unit", "127.0.0.1", {"REMOTEGPU_PIDS_LIMIT": "many"})


def test_without_iptables_the_runtime_says_so_loudly_and_keeps_working(caplog):
    egress = EgressRules("unit", "rgabcde", iptables="/nonexistent/iptables")
    runtime = DockerRuntime(FakeDocker(PLAIN_INFO), scope="unit", egress=egress)  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR):
        runtime._keep_egress()
    assert "is not installed" in (runtime.egress_problem or "")
    assert "EGRESS RULES NOT INSTALLED" in caplog.text
    runtime._create_container(spec(), {})  # environments still start (a laptop in development)
    assert not egress.installed()


def test_the_servers_settings_carry_the_confinement_and_refuse_bad_values():
    from pydantic import ValidationError

    from remotegpu.entrypoints.config import Settings

    settings = Settings(egress_deny="10.0.0.0/8 192.168.1.1/16", egress_internet="false", pids_limit="4096")
    assert (settings.egress_deny, settings.egress_internet, settings.pids_limit) == ("10.0.0.0/8,192.168.0.0/16", False, 4096)
    assert (Settings().pids_limit, Settings().egress_deny, Settings().egress_internet) == (2048, "", True)
    with pytest.raises(ValidationError, match="'lan' is not an IPv4 CIDR"):
        Settings(egress_deny="lan")
    with pytest.raises(ValidationError):
        Settings(pids_limit=10)
