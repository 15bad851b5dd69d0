"""The agent protocol on the wire: JSON-able dicts ↔ the dataclasses of ``agent_protocol``.

Both sides use these functions (the agent's ``HttpAgentLink`` and the server's agent
handlers), so ``x_from_dict(x_to_dict(value)) == value`` for every value.

``*_from_dict`` are strict about what they read: every required key must be present,
every value must have its type (``true`` is not an int, ``"3"`` is not a number), and
enumerations and ranges are checked. They raise ``ValueError`` naming the offending
path (``report.gpus[1].uuid: expected a string, got int``). Keys they do not know are
ignored, so a newer agent can still talk to an older server (and back).

JSON objects only have string keys: ``RuntimeSpec.ports`` travels as ``{"22": 40022}``.
"""

from __future__ import annotations

import re
from typing import Any, get_args

import base64

from remotegpu.application.environments.ports import DataMountSpec, RuntimeSpec, RuntimeStatus
from remotegpu.application.fleet.agent_protocol import (
    DesiredEnvironment,
    DesiredJobNode,
    HeartbeatReply,
    HostReport,
    ImageJobOrder,
    ImageJobReport,
    JobLogChunk,
    ObservedEnvironment,
    ObservedJobNode,
    QuarantinedEnvironment,
)
from remotegpu.application.workloads.ports import JobNodeSpec
from remotegpu.domain.fleet.models import MAX_CLUSTER_NODES, ClusterNode, Gpu

#: What a host key may look like on its way to the agent (written to a file by a shell
#: script in the container: base64 lines between the armour, nothing else).
_OPENSSH_PRIVATE_KEY = re.compile(
    r"-----BEGIN OPENSSH PRIVATE KEY-----\n(?:[A-Za-z0-9+/=]{1,80}\n){1,60}-----END OPENSSH PRIVATE KEY-----\n?"
)

OBSERVED_STATUSES = frozenset(get_args(RuntimeStatus))  # running | stopped | missing | failed
DESIRED_STATES = frozenset({"running", "stopped", "deleted"})

__all__ = [
    "DESIRED_STATES",
    "OBSERVED_STATUSES",
    "desired_from_dict",
    "desired_to_dict",
    "gpu_from_dict",
    "gpu_to_dict",
    "observed_from_dict",
    "observed_to_dict",
    "quarantined_from_dict",
    "reply_from_dict",
    "reply_to_dict",
    "report_from_dict",
    "report_to_dict",
    "spec_from_dict",
    "spec_to_dict",
]


# --- to dict ----------------------------------------------------------------------------


def gpu_to_dict(gpu: Gpu) -> dict[str, Any]:
    return {
        "index": gpu.index,
        "uuid": gpu.uuid,
        "model": gpu.model,
        "memory_mib": gpu.memory_mib,
        "numa_node": gpu.numa_node,
        "nvlink_group": gpu.nvlink_group,
        "healthy": gpu.healthy,
    }


def observed_to_dict(observed: ObservedEnvironment) -> dict[str, Any]:
    return {
        "env_id": observed.env_id,
        "status": observed.status,
        "generation": observed.generation,
        "message": observed.message,
        "ssh_sessions": observed.ssh_sessions,
    }


def report_to_dict(report: HostReport) -> dict[str, Any]:
    return {
        "gpus": [gpu_to_dict(g) for g in report.gpus],
        "cpu_cores": report.cpu_cores,
        "memory_gib": report.memory_gib,
        "disk_gib": report.disk_gib,
        "runtime": report.runtime,
        "runtime_healthy": report.runtime_healthy,
        "fake_gpus": report.fake_gpus,
        "observed": [observed_to_dict(o) for o in report.observed],
        "utilization": dict(report.utilization),
        "address": report.address,
        "private_address": report.private_address,
        "agent_version": report.agent_version,
        "quarantined": [{"env_id": q.env_id, "host_id": q.host_id} for q in report.quarantined],
        "image_jobs": [image_job_report_to_dict(j) for j in report.image_jobs],
        "images": list(report.images),
        "job_nodes": [{"node_id": n.node_id, "status": n.status, "exit_code": n.exit_code, "message": n.message,
                       "log_size": n.log_size} for n in report.job_nodes],
        "job_logs": [{"node_id": c.node_id, "offset": c.offset, "data": base64.b64encode(c.data).decode()}
                     for c in report.job_logs],
        "jobs_healthy": report.jobs_healthy,
        "cluster_nodes": [cluster_node_to_dict(n) for n in report.cluster_nodes],
    }


def cluster_node_to_dict(n: ClusterNode) -> dict[str, Any]:
    return {"name": n.name, "ready": n.ready, "schedulable": n.schedulable, "gpu_capacity": n.gpu_capacity,
            "gpu_allocatable": n.gpu_allocatable, "gpu_allocated": n.gpu_allocated, "cpu": n.cpu, "memory": n.memory,
            "labels": dict(n.labels)}


def cluster_node_from_dict(data: Any, path: str = "cluster_node") -> ClusterNode:
    r = _Reader(data, path)
    labels = r.mapping("labels", {})
    if len(labels) > 64 or not all(isinstance(k, str) and isinstance(v, str) and len(k) <= 317 and len(v) <= 63
                                   for k, v in labels.items()):
        raise ValueError(f"{path}.labels: expected at most 64 Kubernetes labels (strings)")
    name = r.text("name", non_empty=True)
    if len(name) > 253:
        raise ValueError(f"{path}.name: at most 253 characters")
    return ClusterNode(
        name=name, ready=r.flag("ready"), schedulable=r.flag("schedulable"),
        gpu_capacity=r.integer("gpu_capacity", 0, minimum=0), gpu_allocatable=r.integer("gpu_allocatable", 0, minimum=0),
        gpu_allocated=r.integer("gpu_allocated", 0, minimum=0), cpu=r.text("cpu", "")[:32], memory=r.text("memory", "")[:32],
        labels=dict(labels),
    )


def image_job_report_to_dict(j: ImageJobReport) -> dict[str, Any]:
    return {"job_id": j.job_id, "status": j.status, "log_from": j.log_from, "log": j.log, "progress": j.progress,
            "digest": j.digest, "size_bytes": j.size_bytes, "layers": j.layers, "error": j.error}


def image_job_order_to_dict(o: ImageJobOrder) -> dict[str, Any]:
    return {"job_id": o.job_id, "kind": o.kind, "target": o.target, "env_id": o.env_id, "dockerfile": o.dockerfile,
            "context": o.context, "base_reference": o.base_reference, "timeout_seconds": o.timeout_seconds,
            "cpu_cores": o.cpu_cores, "memory_gib": o.memory_gib, "cancel": o.cancel, "log_received": o.log_received,
            "auth": None if o.auth is None else list(o.auth)}


def spec_to_dict(spec: RuntimeSpec) -> dict[str, Any]:
    return {
        "env_id": spec.env_id,
        "image": spec.image,
        "cpu_cores": spec.cpu_cores,
        "memory_gib": spec.memory_gib,
        "gpu_uuids": list(spec.gpu_uuids),
        "gpu_indices": list(spec.gpu_indices),
        "fake_gpus": spec.fake_gpus,
        "env": dict(spec.env),
        "ports": {str(container): host for container, host in spec.ports.items()},
        "labels": dict(spec.labels),
        "private_ports": sorted(spec.private_ports),
        "disk_gib": spec.disk_gib,
        "workspace_id": spec.workspace_id,
        "data_mounts": [{"target": m.target, "kind": m.kind, "repository_id": m.repository_id, "version": m.version}
                        for m in spec.data_mounts],
        "shared_disk_gib": spec.shared_disk_gib,
        "registry_auth": None if spec.registry_auth is None else list(spec.registry_auth),
    }


def desired_to_dict(desired: DesiredEnvironment) -> dict[str, Any]:
    return {
        "env_id": desired.env_id,
        "desired": desired.desired,
        "generation": desired.generation,
        "spec": None if desired.spec is None else spec_to_dict(desired.spec),
        "authorized_keys": None if desired.authorized_keys is None else list(desired.authorized_keys),
        "ssh_host_private_key": desired.ssh_host_private_key,
    }


def reply_to_dict(reply: HeartbeatReply) -> dict[str, Any]:
    return {
        "host_id": reply.host_id,
        "desired": [desired_to_dict(d) for d in reply.desired],
        "interval_seconds": reply.interval_seconds,
        "image_jobs": [image_job_order_to_dict(o) for o in reply.image_jobs],
        "catalog": list(reply.catalog),
        "preload": list(reply.preload),
        "registry_auth": None if reply.registry_auth is None else list(reply.registry_auth),
        "job_nodes": [training_node_desired_to_dict(d) for d in reply.job_nodes],
    }


def training_node_desired_to_dict(d: DesiredJobNode) -> dict[str, Any]:
    spec = None
    if d.spec is not None:
        spec = {
            "node_id": d.spec.node_id, "job_id": d.spec.job_id, "image": d.spec.image, "command": list(d.spec.command),
            "env": dict(d.spec.env), "cpu_cores": d.spec.cpu_cores, "memory_gib": d.spec.memory_gib,
            "gpu_uuids": list(d.spec.gpu_uuids), "gpu_indices": list(d.spec.gpu_indices), "fake_gpus": d.spec.fake_gpus,
            "hostfile": d.spec.hostfile, "alias": d.spec.alias, "workspace_id": d.spec.workspace_id,
            "ports": {str(c): h for c, h in d.spec.ports.items()}, "network": d.spec.network,
            "data_mounts": [{"target": m.target, "kind": m.kind, "repository_id": m.repository_id, "version": m.version}
                            for m in d.spec.data_mounts],
        }
    return {"node_id": d.node_id, "desired": d.desired, "spec": spec, "log_offset": d.log_offset, "keep_network": d.keep_network,
            "collect_output": d.collect_output}


JOB_NODE_STATUSES = frozenset({"running", "exited", "failed", "missing"})
JOB_DESIRED_STATES = frozenset({"running", "stopped", "removed"})
_JOB_NODE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,120}$")


def _job_node_id(r: "_Reader", path: str) -> str:
    node_id = r.text("node_id", non_empty=True)
    if not _JOB_NODE_ID.match(node_id):
        raise ValueError(f"{path}.node_id: not a job node id")
    return node_id


def training_node_desired_from_dict(data: Any, path: str = "job_nodes") -> DesiredJobNode:
    r = _Reader(data, path)
    node_id = _job_node_id(r, path)
    desired = r.text("desired")
    if desired not in JOB_DESIRED_STATES:
        raise ValueError(f"{path}.desired: must be one of {sorted(JOB_DESIRED_STATES)}")
    raw = r._get("spec", None)
    spec = None
    if raw is not None:
        s = _Reader(raw, f"{path}.spec")
        command = s.array("command")
        if not all(isinstance(a, str) for a in command):
            raise ValueError(f"{path}.spec.command: expected strings")
        uuids = s.array("gpu_uuids", [])
        if not all(isinstance(u, str) for u in uuids):
            raise ValueError(f"{path}.spec.gpu_uuids: expected strings")
        spec = JobNodeSpec(
            node_id=s.text("node_id", non_empty=True), job_id=s.text("job_id", non_empty=True), image=s.text("image", non_empty=True),
            command=list(command), env=s.str_map("env"), cpu_cores=s.number("cpu_cores", 1.0), memory_gib=s.number("memory_gib", 1.0),
            gpu_uuids=list(uuids), gpu_indices=[_int(v, f"{path}.spec.gpu_indices[{i}]", 0) for i, v in enumerate(s.array("gpu_indices", []))],
            fake_gpus=s.flag("fake_gpus", False), hostfile=s.text("hostfile", ""), alias=s.text("alias", ""),
            workspace_id=s.optional_text("workspace_id"),
            ports={_port(c, f"{path}.spec.ports key"): _port(h, f"{path}.spec.ports[{c!r}]") for c, h in s.mapping("ports", {}).items()},
            network=s.text("network", ""),
            data_mounts=tuple(_data_mount(m, f"{path}.spec.data_mounts[{i}]") for i, m in enumerate(s.array("data_mounts", []))),
        )
        if spec.network and not _JOB_NODE_ID.match(spec.network):
            raise ValueError(f"{path}.spec.network: not a network key")
        if spec.node_id != node_id:
            raise ValueError(f"{path}.spec.node_id: does not match")
    if desired == "running" and spec is None:
        raise ValueError(f"{path}.spec: required when desired is 'running'")
    collect = r.text("collect_output", "")
    if collect and (not collect.startswith("/") or len(collect) > 500):
        raise ValueError(f"{path}.collect_output: an absolute path")
    return DesiredJobNode(node_id, desired, spec, r.integer("log_offset", 0, minimum=0), r.flag("keep_network", False),
                          collect_output=collect)


# --- from dict --------------------------------------------------------------------------

_MISSING = object()


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


class _Reader:
    """Typed access to one JSON object, with the path used in error messages."""

    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected an object, got {_type_name(data)}")
        self.data, self.path = data, path

    def _get(self, key: str, default: Any) -> Any:
        value = self.data.get(key, _MISSING)
        if value is _MISSING:
            if default is _MISSING:
                raise ValueError(f"{self.path}.{key}: required")
            return default
        return value

    def text(self, key: str, default: Any = _MISSING, *, non_empty: bool = False) -> str:
        value = self._get(key, default)
        if not isinstance(value, str):
            raise ValueError(f"{self.path}.{key}: expected a string, got {_type_name(value)}")
        if non_empty and not value.strip():
            raise ValueError(f"{self.path}.{key}: must not be empty")
        return value

    def optional_text(self, key: str) -> str | None:
        """A non-empty string, or None when absent or null."""
        if self._get(key, None) is None:
            return None
        return self.text(key, non_empty=True)

    def flag(self, key: str, default: Any = _MISSING) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise ValueError(f"{self.path}.{key}: expected true or false, got {_type_name(value)}")
        return value

    def integer(self, key: str, default: Any = _MISSING, *, minimum: int | None = None, nullable: bool = False) -> Any:
        value = self._get(key, default)
        if value is None and nullable:
            return None
        return _int(value, f"{self.path}.{key}", minimum)

    def number(self, key: str, default: Any = _MISSING, *, minimum: float = 0.0) -> float:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{self.path}.{key}: expected a number, got {_type_name(value)}")
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{self.path}.{key}: must be a finite number")
        if value < minimum:
            raise ValueError(f"{self.path}.{key}: must be at least {minimum}, got {value}")
        return float(value)

    def array(self, key: str, default: Any = _MISSING) -> list[Any]:
        value = self._get(key, default)
        if not isinstance(value, list):
            raise ValueError(f"{self.path}.{key}: expected a list, got {_type_name(value)}")
        return value

    def mapping(self, key: str, default: Any = _MISSING) -> dict[Any, Any]:
        value = self._get(key, default)
        if not isinstance(value, dict):
            raise ValueError(f"{self.path}.{key}: expected an object, got {_type_name(value)}")
        return value

    def str_map(self, key: str) -> dict[str, str]:
        mapping = self.mapping(key, {})
        for k, v in mapping.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise ValueError(f"{self.path}.{key}: expected string keys and values, got {k!r}: {_type_name(v)}")
        return dict(mapping)


def _int(value: Any, path: str, minimum: int | None = None, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{path}: expected an integer, got {_type_name(value)}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{path}: must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{path}: must be at most {maximum}, got {value}")
    return value


def _unique(keys: list[str], path: str) -> None:
    seen: set[str] = set()
    for key in keys:
        if key in seen:
            raise ValueError(f"{path}: {key!r} appears twice")
        seen.add(key)


def _port(value: Any, path: str) -> int:
    if isinstance(value, str):  # JSON object keys
        if not value.isdigit():
            raise ValueError(f"{path}: expected a port number, got {value!r}")
        value = int(value)
    return _int(value, path, 1, 65535)


def gpu_from_dict(data: Any, path: str = "gpu") -> Gpu:
    r = _Reader(data, path)
    return Gpu(
        index=r.integer("index", minimum=0),
        uuid=r.text("uuid", non_empty=True),
        model=r.text("model"),
        memory_mib=r.integer("memory_mib", minimum=0),
        numa_node=r.integer("numa_node", None, nullable=True),
        nvlink_group=r.integer("nvlink_group", None, nullable=True),
        healthy=r.flag("healthy", True),
    )


def observed_from_dict(data: Any, path: str = "observed") -> ObservedEnvironment:
    r = _Reader(data, path)
    status = r.text("status")
    if status not in OBSERVED_STATUSES:
        raise ValueError(f"{path}.status: must be one of {sorted(OBSERVED_STATUSES)}, got {status!r}")
    return ObservedEnvironment(
        env_id=r.text("env_id", non_empty=True),
        status=status,
        generation=r.integer("generation", None, minimum=0, nullable=True),
        message=r.text("message", ""),
        ssh_sessions=r.integer("ssh_sessions", 0, minimum=0),  # absent from older agents
        # "ssh_host_key" (older agents: the key read from the container) is ignored: never trusted.
    )


def report_from_dict(data: Any, path: str = "report") -> HostReport:
    r = _Reader(data, path)
    utilization = {}
    for uuid, percent in r.mapping("utilization", {}).items():
        if not isinstance(uuid, str):
            raise ValueError(f"{path}.utilization: keys must be GPU uuids (strings)")
        utilization[uuid] = _int(percent, f"{path}.utilization[{uuid!r}]", 0, 100)
    observed = [observed_from_dict(o, f"{path}.observed[{i}]") for i, o in enumerate(r.array("observed", []))]
    _unique([o.env_id for o in observed], f"{path}.observed")
    quarantined = [quarantined_from_dict(q, f"{path}.quarantined[{i}]") for i, q in enumerate(r.array("quarantined", []))]
    _unique([q.env_id for q in quarantined], f"{path}.quarantined")
    gpus = [gpu_from_dict(g, f"{path}.gpus[{i}]") for i, g in enumerate(r.array("gpus"))]
    _unique([g.uuid for g in gpus], f"{path}.gpus (uuid)")
    job_nodes = []
    for i, raw in enumerate(r.array("job_nodes", [])):
        n, where = _Reader(raw, f"{path}.job_nodes[{i}]"), f"{path}.job_nodes[{i}]"
        status = n.text("status")
        if status not in JOB_NODE_STATUSES:
            raise ValueError(f"{where}.status: must be one of {sorted(JOB_NODE_STATUSES)}")
        job_nodes.append(ObservedJobNode(_job_node_id(n, where), status, n.integer("exit_code", None, nullable=True),
                                         n.text("message", "")[:1000], n.integer("log_size", 0, minimum=0)))
    _unique([n.node_id for n in job_nodes], f"{path}.job_nodes")
    job_logs = []
    for i, raw in enumerate(r.array("job_logs", [])):
        c, where = _Reader(raw, f"{path}.job_logs[{i}]"), f"{path}.job_logs[{i}]"
        try:
            data = base64.b64decode(c.text("data", ""), validate=True)
        except ValueError:
            raise ValueError(f"{where}.data: expected base64") from None
        job_logs.append(JobLogChunk(_job_node_id(c, where), c.integer("offset", minimum=0), data))
    cluster_nodes = [cluster_node_from_dict(n, f"{path}.cluster_nodes[{i}]")
                     for i, n in enumerate(r.array("cluster_nodes", [])[:MAX_CLUSTER_NODES])]
    _unique([n.name for n in cluster_nodes], f"{path}.cluster_nodes")
    return HostReport(
        gpus=gpus,
        cpu_cores=r.integer("cpu_cores", minimum=0),
        memory_gib=r.integer("memory_gib", minimum=0),
        disk_gib=r.integer("disk_gib", minimum=0),
        runtime=r.text("runtime"),
        runtime_healthy=r.flag("runtime_healthy"),
        fake_gpus=r.flag("fake_gpus", False),
        observed=observed,
        utilization=utilization,
        address=r.text("address", ""),
        private_address=r.text("private_address", ""),  # absent from older agents
        agent_version=r.text("agent_version", ""),
        quarantined=quarantined,  # absent from older agents
        image_jobs=[image_job_report_from_dict(j, f"{path}.image_jobs[{i}]") for i, j in enumerate(r.array("image_jobs", []))],
        images=_strings(r.array("images", []), f"{path}.images"),
        job_nodes=job_nodes,  # absent from agents without the workloads context
        job_logs=job_logs,
        jobs_healthy=r.flag("jobs_healthy", False),  # absent: an agent without job runtime
        cluster_nodes=cluster_nodes,  # absent: not a Kubernetes agent
    )


def _strings(values: list[Any], path: str) -> list[str]:
    for i, v in enumerate(values):
        if not isinstance(v, str):
            raise ValueError(f"{path}[{i}]: expected a string, got {_type_name(v)}")
    return list(values)


def _auth(value: Any, path: str) -> tuple[str, str, str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 3 or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{path}: expected [registry, username, password]")
    return (value[0], value[1], value[2])


def image_job_report_from_dict(data: Any, path: str = "image_job") -> ImageJobReport:
    r = _Reader(data, path)
    status = r.text("status")
    if status not in ("running", "succeeded", "failed", "cancelled"):
        raise ValueError(f"{path}.status: unknown {status!r}")
    return ImageJobReport(
        job_id=r.text("job_id", non_empty=True), status=status, log_from=r.integer("log_from", 0, minimum=0),
        log=r.text("log", ""), progress=r.text("progress", ""), digest=r.text("digest", ""),
        size_bytes=r.integer("size_bytes", 0, minimum=0), layers=r.integer("layers", 0, minimum=0), error=r.text("error", ""),
    )


def image_job_order_from_dict(data: Any, path: str = "image_job") -> ImageJobOrder:
    r = _Reader(data, path)
    kind = r.text("kind")
    if kind not in ("save", "build"):
        raise ValueError(f"{path}.kind: unknown {kind!r}")
    return ImageJobOrder(
        job_id=r.text("job_id", non_empty=True), kind=kind, target=r.text("target", non_empty=True),
        env_id=r.optional_text("env_id"), dockerfile=r.text("dockerfile", ""), context=r.text("context", ""),
        base_reference=r.text("base_reference", ""), timeout_seconds=r.integer("timeout_seconds", 3600, minimum=1),
        cpu_cores=r.integer("cpu_cores", 2, minimum=1), memory_gib=r.integer("memory_gib", 4, minimum=1),
        cancel=r.flag("cancel", False), log_received=r.integer("log_received", 0, minimum=0),
        auth=_auth(r._get("auth", None), f"{path}.auth"),
    )


def quarantined_from_dict(data: Any, path: str = "quarantined") -> QuarantinedEnvironment:
    r = _Reader(data, path)
    env_id = r.text("env_id", non_empty=True)
    host_id = r.text("host_id", "")
    for key, value in (("env_id", env_id), ("host_id", host_id)):
        if len(value) > 200 or any(c.isspace() for c in value):
            raise ValueError(f"{path}.{key}: expected an id (at most 200 characters, no spaces)")
    return QuarantinedEnvironment(env_id=env_id, host_id=host_id)


def spec_from_dict(data: Any, path: str = "spec") -> RuntimeSpec:
    r = _Reader(data, path)
    uuids = r.array("gpu_uuids", [])
    for i, uuid in enumerate(uuids):
        if not isinstance(uuid, str):
            raise ValueError(f"{path}.gpu_uuids[{i}]: expected a string, got {_type_name(uuid)}")
    indices = [_int(v, f"{path}.gpu_indices[{i}]", 0) for i, v in enumerate(r.array("gpu_indices", []))]
    ports = {
        _port(c, f"{path}.ports key {c!r}"): _port(h, f"{path}.ports[{c!r}]") for c, h in r.mapping("ports", {}).items()
    }
    private = frozenset(_port(p, f"{path}.private_ports[{i}]") for i, p in enumerate(r.array("private_ports", [])))
    return RuntimeSpec(
        env_id=r.text("env_id", non_empty=True),
        image=r.text("image", non_empty=True),
        cpu_cores=r.number("cpu_cores", 1.0),
        memory_gib=r.number("memory_gib", 1.0),
        gpu_uuids=list(uuids),
        gpu_indices=indices,
        fake_gpus=r.flag("fake_gpus", False),
        env=r.str_map("env"),
        ports=ports,
        labels=r.str_map("labels"),
        private_ports=private,
        disk_gib=r.integer("disk_gib", None, minimum=1, nullable=True),  # absent from older servers
        workspace_id=r.optional_text("workspace_id"),  # idem
        data_mounts=tuple(_data_mount(m, f"{path}.data_mounts[{i}]") for i, m in enumerate(r.array("data_mounts", []))),
        shared_disk_gib=r.integer("shared_disk_gib", None, minimum=1, nullable=True),  # absent from older servers
        registry_auth=_auth(r._get("registry_auth", None), f"{path}.registry_auth"),
    )


def _data_mount(data: Any, path: str) -> DataMountSpec:
    r = _Reader(data, path)
    target = r.text("target", non_empty=True)
    if not (target.startswith("/datasets/") or target.startswith("/models/")) or ".." in target.split("/"):
        raise ValueError(f"{path}.target: expected /datasets/<name> or /models/<name>")
    return DataMountSpec(target=target, kind=r.text("kind", non_empty=True), repository_id=r.text("repository_id", non_empty=True),
                         version=r.integer("version", minimum=1))


def desired_from_dict(data: Any, path: str = "desired") -> DesiredEnvironment:
    r = _Reader(data, path)
    env_id = r.text("env_id", non_empty=True)
    desired = r.text("desired")
    if desired not in DESIRED_STATES:
        raise ValueError(f"{path}.desired: must be one of {sorted(DESIRED_STATES)}, got {desired!r}")
    raw_spec = r._get("spec", None)
    spec = None if raw_spec is None else spec_from_dict(raw_spec, f"{path}.spec")
    if desired == "running" and spec is None:
        raise ValueError(f"{path}.spec: required when desired is 'running'")
    if spec is not None and spec.env_id != env_id:
        raise ValueError(f"{path}.spec.env_id: {spec.env_id!r} does not match env_id {env_id!r}")
    raw_keys = r._get("authorized_keys", None)
    keys = None
    if raw_keys is not None:
        keys = r.array("authorized_keys")
        for i, key in enumerate(keys):
            if not isinstance(key, str) or "\n" in key:
                raise ValueError(f"{path}.authorized_keys[{i}]: expected a one-line string")
    host_key = r._get("ssh_host_private_key", None)  # absent from older servers
    if host_key is not None:
        host_key = r.text("ssh_host_private_key")
        if not _OPENSSH_PRIVATE_KEY.fullmatch(host_key):
            raise ValueError(f"{path}.ssh_host_private_key: expected an OpenSSH private key (PEM)")
    return DesiredEnvironment(
        env_id=env_id, desired=desired, generation=r.integer("generation", 0, minimum=0), spec=spec,
        authorized_keys=None if keys is None else list(keys), ssh_host_private_key=host_key,
    )


def reply_from_dict(data: Any, path: str = "reply") -> HeartbeatReply:
    r = _Reader(data, path)
    interval = r.number("interval_seconds")
    if interval <= 0:
        raise ValueError(f"{path}.interval_seconds: must be positive, got {interval}")
    desired = [desired_from_dict(d, f"{path}.desired[{i}]") for i, d in enumerate(r.array("desired"))]
    _unique([d.env_id for d in desired], f"{path}.desired")
    job_nodes = [training_node_desired_from_dict(d, f"{path}.job_nodes[{i}]") for i, d in enumerate(r.array("job_nodes", []))]
    return HeartbeatReply(
        host_id=r.text("host_id", non_empty=True), desired=desired, interval_seconds=interval,
        image_jobs=[image_job_order_from_dict(o, f"{path}.image_jobs[{i}]") for i, o in enumerate(r.array("image_jobs", []))],
        catalog=_strings(r.array("catalog", []), f"{path}.catalog"),
        preload=_strings(r.array("preload", []), f"{path}.preload"),
        registry_auth=_auth(r._get("registry_auth", None), f"{path}.registry_auth"),
        job_nodes=job_nodes,
    )
