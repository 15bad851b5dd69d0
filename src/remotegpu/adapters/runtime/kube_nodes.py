"""The cluster's GPUs as the inventory of the agent that drives the Kubernetes runtime.

In Kubernetes mode one agent stands for the whole cluster (one host in the platform's
fleet view, which lists the cluster's nodes under it: ``cluster_nodes``). Its inventory is every Ready, schedulable node's allocatable
``nvidia.com/gpu`` (the device plugin's count, not a probe of the agent's own machine),
the model from GPU feature discovery's ``nvidia.com/gpu.product`` label (used verbatim, so
the Pod's node selector matches it again), GPUs of one node sharing an ``nvlink_group``.
The platform's quota, queue and billing count these GPUs; the cluster's scheduler picks
the node. Read from a node informer (watch, not polling); needs ``list``/``watch`` on
nodes (a ClusterRole).
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from remotegpu.adapters.runtime.kube_informer import Informer
from remotegpu.adapters.runtime.kubernetes_runtime import GPU_PRODUCT_LABEL
from remotegpu.domain.fleet.models import MAX_CLUSTER_NODES, ClusterNode, Gpu

log = logging.getLogger(__name__)
GPU_MEMORY_LABEL = "nvidia.com/gpu.memory"  # MiB, as GPU feature discovery labels it
#: The node labels the fleet view shows: GPU feature discovery's, and where the node is.
SHOWN_LABEL_PREFIXES = ("nvidia.com/", "topology.kubernetes.io/", "node.kubernetes.io/instance-type")


class KubernetesGpuProbe:
    def __init__(self, api_client: Any, *, gpu_resource: str = "nvidia.com/gpu", node_selector: str = "",
                 allocated: Callable[[], dict[str, int]] | None = None) -> None:
        """``allocated``: GPUs the platform's Pods request, by node name (the runtime's
        ``gpus_by_node``), for the fleet view."""
        from kubernetes import client

        self.gpu_resource = gpu_resource
        self._allocated = allocated
        self.nodes = Informer(client.CoreV1Api(api_client).list_node, namespace=None, label_selector=node_selector,
                              name="nodes")
        self._started = False

    def _start(self) -> bool:
        if not self._started:
            try:
                self.nodes.start(timeout=10)
                self._started = True
            except Exception as exc:  # noqa: BLE001 - the API server does not answer: no GPUs this beat
                log.warning("cannot list the cluster's nodes: %s", exc)
                return False
        return True

    def cluster_nodes(self) -> list[ClusterNode]:
        """Every node (Ready or not, schedulable or cordoned), for the admin's fleet view."""
        if not self._start():
            return []
        allocated = self._allocated() if self._allocated is not None else {}
        out = []
        for node in sorted(self.nodes.items(), key=lambda n: n.metadata.name)[:MAX_CLUSTER_NODES]:
            status = node.status
            capacity = (status.capacity if status is not None else None) or {}
            allocatable = (status.allocatable if status is not None else None) or {}
            labels = node.metadata.labels or {}
            out.append(ClusterNode(
                name=node.metadata.name, ready=_ready(node), schedulable=not (node.spec is not None and node.spec.unschedulable),
                gpu_capacity=_count(capacity.get(self.gpu_resource)), gpu_allocatable=_count(allocatable.get(self.gpu_resource)),
                gpu_allocated=allocated.get(node.metadata.name, 0), cpu=str(allocatable.get("cpu", ""))[:32],
                memory=str(allocatable.get("memory", ""))[:32],
                labels={k: v for k, v in sorted(labels.items()) if k.startswith(SHOWN_LABEL_PREFIXES)}))
        return out

    def inventory(self) -> list[Gpu]:
        if not self._start():
            return []
        gpus: list[Gpu] = []
        for group, node in enumerate(sorted(self.nodes.items(), key=lambda n: n.metadata.name)):
            if (node.spec is not None and node.spec.unschedulable) or not _ready(node):
                continue
            allocatable = (node.status.allocatable if node.status is not None else None) or {}
            try:
                count = int(allocatable.get(self.gpu_resource, "0"))
            except ValueError:
                continue
            labels = node.metadata.labels or {}
            model = labels.get(GPU_PRODUCT_LABEL) or "GPU"
            try:
                memory = int(labels.get(GPU_MEMORY_LABEL, "0"))
            except ValueError:
                memory = 0
            for i in range(count):
                gpus.append(Gpu(len(gpus), f"k8s-{node.metadata.name}-{i}", model, memory, None, group))
        return gpus

    def utilization(self) -> dict[str, int]:
        return {}

    def close(self) -> None:
        self.nodes.stop()


def _count(quantity: Any) -> int:
    try:
        return int(quantity or 0)
    except (TypeError, ValueError):
        return 0


def _ready(node: Any) -> bool:
    conditions = (node.status.conditions if node.status is not None else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)
