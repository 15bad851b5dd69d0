"""The agent protocol's wire format: symmetrical round trips, strict reading."""

from __future__ import annotations

import copy
import json

import pytest

from remotegpu.adapters.fleet.wire import (
    desired_from_dict,
    gpu_from_dict,
    gpu_to_dict,
    observed_from_dict,
    reply_from_dict,
    reply_to_dict,
    report_from_dict,
    report_to_dict,
    spec_from_dict,
    spec_to_dict,
)
from remotegpu.application.environments.ports import RuntimeSpec
from remotegpu.application.fleet.agent_protocol import (
    DesiredEnvironment,
    HeartbeatReply,
    HostReport,
    ObservedEnvironment,
    QuarantinedEnvironment,
)
from remotegpu.domain.fleet.models import ClusterNode, Gpu

GPUS = [
    Gpu(0, "GPU-aaaa", "NVIDIA H100 80GB HBM3", 81920, numa_node=0, nvlink_group=1),
    Gpu(1, "GPU-bbbb", "NVIDIA H100 80GB HBM3", 81920, healthy=False),
]
REPORT = HostReport(
    gpus=GPUS, cpu_cores=64, memory_gib=512, disk_gib=3500, runtime="docker", runtime_healthy=True,
    fake_gpus=False,
    observed=[ObservedEnvironment("env-1", "running", 3, ssh_sessions=2),
              ObservedEnvironment("env-2", "failed", None, "image missing")],
    utilization={"GPU-aaaa": 97, "GPU-bbbb": 0}, address="10.0.0.7", private_address="192.168.0.7", agent_version="0.1.0",
    quarantined=[QuarantinedEnvironment("env-9", "host-0"), QuarantinedEnvironment("env-8")],
    cluster_nodes=[ClusterNode("gpu-a", True, True, 8, 8, 3, "64", "512Gi", {"nvidia.com/gpu.product": "NVIDIA-H100"}),
                   ClusterNode("gpu-b", False, False)],
)
SPEC = RuntimeSpec(
    env_id="env-1", image="remotegpu/base:latest", cpu_cores=7.5, memory_gib=30.0, gpu_uuids=["GPU-aaaa"],
    gpu_indices=[0], fake_gpus=True, env={"A": "1"}, ports={22: 40022, 8888: 40023},
    labels={"remotegpu.generation": "3"}, disk_gib=100, workspace_id="ws-1",
)
REPLY = HeartbeatReply(
    host_id="host-1",
    desired=[DesiredEnvironment("env-1", "running", 3, SPEC), DesiredEnvironment("env-2", "stopped", 1),
             DesiredEnvironment("env-3", "deleted", 0)],
    interval_seconds=5.0,
)


def through_json(data):
    return json.loads(json.dumps(data))


def test_report_round_trip():
    data = through_json(report_to_dict(REPORT))
    assert report_from_dict(data) == REPORT
    assert report_to_dict(report_from_dict(data)) == data


def test_reply_round_trip():
    data = through_json(reply_to_dict(REPLY))
    assert data["desired"][0]["spec"]["ports"] == {"22": 40022, "8888": 40023}
    assert reply_from_dict(data) == REPLY
    assert reply_to_dict(reply_from_dict(data)) == data


def test_minimal_report_and_defaults():
    minimal = {"gpus": [], "cpu_cores": 1, "memory_gib": 1, "disk_gib": 1, "runtime": "local", "runtime_healthy": False}
    report = report_from_dict(minimal)
    assert report == HostReport([], 1, 1, 1, "local", False)
    assert gpu_from_dict({"index": 0, "uuid": "GPU-x", "model": "m", "memory_mib": 0}) == Gpu(0, "GPU-x", "m", 0)


def test_unknown_keys_are_ignored_for_version_skew():
    data = through_json(report_to_dict(REPORT))
    data["from_the_future"] = {"x": 1}
    data["gpus"][0]["mig"] = True
    assert report_from_dict(data) == REPORT


def test_an_older_agent_without_ssh_sessions_reports_none():
    data = through_json(report_to_dict(REPORT))
    assert data["observed"][0]["ssh_sessions"] == 2
    del data["observed"][0]["ssh_sessions"]
    assert report_from_dict(data).observed[0].ssh_sessions == 0


def test_an_older_server_without_disk_gib_sends_none():
    data = through_json(spec_to_dict(SPEC))
    assert data["disk_gib"] == 100
    del data["disk_gib"]
    assert spec_from_dict(data).disk_gib is None
    assert spec_from_dict(through_json(spec_to_dict(RuntimeSpec("env-2", "img")))).disk_gib is None


def test_the_shared_disk_travels_and_an_older_server_sends_none():
    from dataclasses import replace

    data = through_json(spec_to_dict(replace(SPEC, shared_disk_gib=20)))
    assert data["shared_disk_gib"] == 20 and spec_from_dict(data).shared_disk_gib == 20
    del data["shared_disk_gib"]
    assert spec_from_dict(data).shared_disk_gib is None
    with pytest.raises(ValueError, match="shared_disk_gib"):
        spec_from_dict({**data, "shared_disk_gib": 0})


def test_an_older_server_without_workspace_id_sends_none():
    data = through_json(spec_to_dict(SPEC))
    assert data["workspace_id"] == "ws-1"
    del data["workspace_id"]
    assert spec_from_dict(data).workspace_id is None
    assert spec_from_dict({**data, "workspace_id": None}).workspace_id is None
    with pytest.raises(ValueError, match="spec.workspace_id: expected a string"):
        spec_from_dict({**data, "workspace_id": 3})


def test_int_port_keys_are_accepted_too():
    data = spec_to_dict(SPEC)
    data["ports"] = {22: 40022}
    assert spec_from_dict(data).ports == {22: 40022}


def _report_with(path, value):
    data = through_json(report_to_dict(REPORT))
    target = data
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


@pytest.mark.parametrize(
    "path, value, message",
    [
        (("cpu_cores",), KeyError, "report.cpu_cores: required"),
        (("cpu_cores",), "64", "report.cpu_cores: expected an integer, got str"),
        (("cpu_cores",), True, "report.cpu_cores: expected an integer, got bool"),
        (("memory_gib",), -1, "report.memory_gib: must be at least 0"),
        (("runtime_healthy",), 1, "report.runtime_healthy: expected true or false, got int"),
        (("gpus",), {}, "report.gpus: expected a list, got dict"),
        (("gpus", 1, "uuid"), 7, "report.gpus[1].uuid: expected a string, got int"),
        (("gpus", 1, "uuid"), "GPU-aaaa", "report.gpus (uuid): 'GPU-aaaa' appears twice"),
        (("gpus", 0, "numa_node"), 0.5, "report.gpus[0].numa_node: expected an integer, got float"),
        (("observed", 0, "status"), "exploded", "report.observed[0].status: must be one of"),
        (("observed", 1, "env_id"), "env-1", "report.observed: 'env-1' appears twice"),
        (("observed", 0, "env_id"), "", "report.observed[0].env_id: must not be empty"),
        (("observed", 0, "ssh_sessions"), -1, "report.observed[0].ssh_sessions: must be at least 0"),
        (("observed", 0, "ssh_sessions"), "1", "report.observed[0].ssh_sessions: expected an integer, got str"),
        (("utilization", "GPU-aaaa"), 101, "report.utilization['GPU-aaaa']: must be at most 100"),
        (("address",), None, "report.address: expected a string, got null"),
        (("quarantined", 1, "env_id"), "env-9", "report.quarantined: 'env-9' appears twice"),
        (("quarantined", 0, "env_id"), "", "report.quarantined[0].env_id: must not be empty"),
        (("quarantined", 0, "host_id"), "a b", "report.quarantined[0].host_id: expected an id"),
        (("quarantined",), {}, "report.quarantined: expected a list"),
        (("cluster_nodes", 1, "name"), "gpu-a", "report.cluster_nodes: 'gpu-a' appears twice"),
        (("cluster_nodes", 0, "ready"), "yes", "report.cluster_nodes[0].ready: expected true or false"),
        (("cluster_nodes", 0, "gpu_allocated"), -1, "report.cluster_nodes[0].gpu_allocated: must be at least 0"),
        (("cluster_nodes", 0, "labels"), {"a": 1}, "report.cluster_nodes[0].labels: expected at most 64"),
        (("cluster_nodes", 0, "name"), "", "report.cluster_nodes[0].name: must not be empty"),
    ],
)
def test_bad_reports_are_refused_with_a_clear_message(path, value, message):
    with pytest.raises(ValueError) as info:
        report_from_dict(_report_with(path, value))
    assert message in str(info.value)


def test_not_an_object():
    for fn in (report_from_dict, reply_from_dict, observed_from_dict, desired_from_dict, gpu_from_dict):
        with pytest.raises(ValueError, match="expected an object, got list"):
            fn([])


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.pop("host_id"), "reply.host_id: required"),
        (lambda d: d.update(interval_seconds=0), "reply.interval_seconds: must be positive"),
        (lambda d: d.update(interval_seconds="5"), "reply.interval_seconds: expected a number"),
        (lambda d: d["desired"][0].update(desired="paused"), "reply.desired[0].desired: must be one of"),
        (lambda d: d["desired"][0].update(spec=None), "reply.desired[0].spec: required when desired is 'running'"),
        (lambda d: d["desired"][0]["spec"].update(env_id="other"), "does not match env_id 'env-1'"),
        (lambda d: d["desired"][0]["spec"]["ports"].update({"ssh": 1}), "expected a port number, got 'ssh'"),
        (lambda d: d["desired"][0]["spec"]["ports"].update({"22": 70000}), "must be at most 65535"),
        (lambda d: d["desired"][0]["spec"]["env"].update(A=1), "reply.desired[0].spec.env: expected string keys"),
        (lambda d: d["desired"][0]["spec"].update(cpu_cores=float("nan")), "must be a finite number"),
        (lambda d: d["desired"][0]["spec"].update(gpu_uuids=[1]), "reply.desired[0].spec.gpu_uuids[0]"),
        (lambda d: d["desired"][0]["spec"].update(image=""), "reply.desired[0].spec.image: must not be empty"),
        (lambda d: d["desired"][0]["spec"].update(disk_gib=0), "reply.desired[0].spec.disk_gib: must be at least 1"),
        (lambda d: d["desired"][0]["spec"].update(disk_gib="50"), "reply.desired[0].spec.disk_gib: expected an integer"),
        (lambda d: d["desired"][1].update(env_id="env-1"), "reply.desired: 'env-1' appears twice"),
        (lambda d: d["desired"][2].update(generation=-1), "reply.desired[2].generation: must be at least 0"),
    ],
)
def test_bad_replies_are_refused_with_a_clear_message(mutate, message):
    data = copy.deepcopy(reply_to_dict(REPLY))
    mutate(data)
    with pytest.raises(ValueError) as info:
        reply_from_dict(data)
    assert message in str(info.value)


def test_gpu_round_trip_keeps_unknown_topology():
    gpu = Gpu(3, "GPU-c", "NVIDIA A100-SXM4-80GB", 81920)
    assert gpu_to_dict(gpu)["numa_node"] is None
    assert gpu_from_dict(through_json(gpu_to_dict(gpu))) == gpu
