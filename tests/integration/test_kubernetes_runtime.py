"""The Kubernetes runtime through a real kube-apiserver, scheduler and controller-manager
(tests/support/kube_cluster.py: the kubelet is a stand-in, everything else is Kubernetes
1.20.2 built from Debian's source package)."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from typing import Any

import pytest

from remotegpu.adapters.runtime.kubernetes_runtime import GPU_PRODUCT_LABEL, KubernetesRuntime
from remotegpu.application.environments.ports import LABEL_ENV_ID, LABEL_GPU_MODEL, RuntimeSpec
from tests.support.kube_cluster import GPU_PRODUCT

MODEL = GPU_PRODUCT.replace("-", " ", 1)  # what the platform's inventory says: "NVIDIA H100-80GB-HBM3"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def kube(kube_cluster):
    from kubernetes import client

    namespace = kube_cluster.create_namespace(f"it-{uuid.uuid4().hex[:8]}")
    core = client.CoreV1Api(kube_cluster.api_client())
    runtime = KubernetesRuntime(kube_cluster.api_client(), namespace=namespace, scope=f"it-{uuid.uuid4().hex[:6]}",
                                storage_class=kube_cluster.storage_class, start_timeout=30, stop_grace_seconds=2)
    made: list[str] = []
    try:
        yield runtime, core, kube_cluster, made
    finally:
        for env_id in made:
            runtime._remove(env_id)
        runtime.close()
        core.delete_namespace(namespace)


def spec(env_id: str, **overrides: Any) -> RuntimeSpec:
    values: dict[str, Any] = dict(env_id=env_id, image="remotegpu/base:latest", cpu_cores=2, memory_gib=4,
                                  gpu_indices=[0], gpu_uuids=["GPU-k8s-0"], ports={22: free_port()},
                                  env={"REMOTEGPU_JUPYTER_TOKEN": "s3cret"}, disk_gib=20,
                                  labels={LABEL_GPU_MODEL: MODEL, "remotegpu.generation": "1"})
    values.update(overrides)
    return RuntimeSpec(**values)


def objects(core: Any, runtime: KubernetesRuntime, env_id: str) -> dict[str, list[Any]]:
    from kubernetes import client

    selector = f"{LABEL_ENV_ID}={env_id},remotegpu.scope={runtime.scope}"
    ns = runtime.namespace
    return {
        "networkpolicies": client.NetworkingV1Api(core.api_client).list_namespaced_network_policy(
            ns, label_selector=selector).items,
        "pods": core.list_namespaced_pod(ns, label_selector=selector).items,
        "pvcs": core.list_namespaced_persistent_volume_claim(ns, label_selector=selector).items,
        "services": core.list_namespaced_service(ns, label_selector=selector).items,
        "secrets": core.list_namespaced_secret(ns, label_selector=selector).items,
    }


async def test_create_running_stop_keeps_the_claim_start_reuses_it_delete_leaves_nothing(kube) -> None:
    runtime, core, cluster, made = kube
    env_id = f"env-{uuid.uuid4().hex[:10]}"
    made.append(env_id)
    wanted = spec(env_id)

    running = await runtime.ensure_running(wanted)

    assert running.status == "running" and running.ports == wanted.ports and running.generation == 1
    found = objects(core, runtime, env_id)
    (pod,) = found["pods"]
    (claim,) = found["pvcs"]
    (service,) = found["services"]
    assert pod.spec.node_name in cluster.nodes and pod.status.pod_ip  # placed by the real scheduler
    limits = pod.spec.containers[0].resources.limits
    assert limits == {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "1"}
    assert pod.spec.containers[0].resources.requests == limits
    assert pod.spec.node_selector == {GPU_PRODUCT_LABEL: GPU_PRODUCT}
    assert pod.spec.volumes[0].persistent_volume_claim.claim_name == claim.metadata.name
    assert claim.spec.resources.requests == {"storage": "20Gi"} and claim.status.phase == "Bound"
    assert service.spec.type == "NodePort" and [p.node_port for p in service.spec.ports] == [wanted.ports[22]]
    (policy,) = found["networkpolicies"]
    # Variables (secrets among them) live in a Secret, never in the Pod's spec.
    assert "s3cret" not in str(pod.spec)
    assert pod.spec.containers[0].env_from[0].secret_ref.name == f"{claim.metadata.name}-env"
    for owned in (pod, service, policy, *found["secrets"]):
        (owner,) = owned.metadata.owner_references
        assert (owner.kind, owner.uid) == ("PersistentVolumeClaim", claim.metadata.uid)
    disk = cluster.volume_dir(runtime.namespace, claim.metadata.name)
    (disk / "notes.txt").write_text("survives stop")

    await runtime.stop(env_id)

    stopped = await runtime.inspect(env_id)
    assert stopped.status == "stopped" and stopped.container_id is None
    after_stop = objects(core, runtime, env_id)
    assert after_stop["pods"] == []
    assert [c.metadata.uid for c in after_stop["pvcs"]] == [claim.metadata.uid]

    again = await runtime.ensure_running(spec(env_id, ports={22: free_port()}))

    assert again.status == "running" and again.container_id != running.container_id
    (pod2,) = objects(core, runtime, env_id)["pods"]
    assert pod2.spec.volumes[0].persistent_volume_claim.claim_name == claim.metadata.name
    assert (cluster.volume_dir(runtime.namespace, claim.metadata.name) / "notes.txt").read_text() == "survives stop"
    (service2,) = objects(core, runtime, env_id)["services"]
    assert [p.node_port for p in service2.spec.ports] == [again.ports[22]]

    await runtime.remove(env_id)

    assert await runtime.inspect(env_id) is None
    assert all(not items for items in objects(core, runtime, env_id).values())


async def test_a_pod_that_cannot_fit_reports_the_schedulers_reason(kube) -> None:
    runtime, core, cluster, made = kube
    too_big, no_such_model = f"env-{uuid.uuid4().hex[:10]}", f"env-{uuid.uuid4().hex[:10]}"
    made.extend([too_big, no_such_model])

    big = await runtime.ensure_running(spec(too_big, gpu_indices=list(range(8)), gpu_uuids=[]))
    elsewhere = await runtime.ensure_running(spec(no_such_model, labels={LABEL_GPU_MODEL: "NVIDIA B200"}))

    assert big.status == "missing"
    assert "Insufficient nvidia.com/gpu" in big.message, big.message
    assert elsewhere.status == "missing"
    assert "node selector" in elsewhere.message or "affinity" in elsewhere.message, elsewhere.message
    listed = {s.env_id: s for s in await runtime.list()}
    assert listed[too_big].message == (await runtime.inspect(too_big)).message
    # Asking again is idempotent: the same Pod keeps waiting.
    assert (await runtime.ensure_running(spec(too_big, gpu_indices=list(range(8)), gpu_uuids=[]))).container_id \
        == big.container_id


async def test_a_crash_between_the_claim_and_the_pod_converges(kube) -> None:
    runtime, core, cluster, made = kube
    env_id = f"env-{uuid.uuid4().hex[:10]}"
    made.append(env_id)
    wanted = spec(env_id)
    runtime._informers()
    await asyncio.to_thread(runtime._ensure_claim, wanted, runtime.name_for(env_id))  # ...and the agent died

    assert (await runtime.inspect(env_id)).status == "stopped"
    assert (await runtime.ensure_running(wanted)).status == "running"
    assert len(objects(core, runtime, env_id)["pvcs"]) == 1


async def test_deleting_the_claim_removes_everything_through_owner_references(kube) -> None:
    from kubernetes import client

    runtime, core, cluster, made = kube
    env_id = f"env-{uuid.uuid4().hex[:10]}"
    made.append(env_id)
    await runtime.ensure_running(spec(env_id, ports={22: free_port(), 8888: free_port()}, private_ports=frozenset({8888})))
    services = {s.metadata.name: s.spec.type for s in objects(core, runtime, env_id)["services"]}
    name = runtime.name_for(env_id)
    assert services == {name: "NodePort", f"{name}-apps": "ClusterIP"}

    # What an operator's `kubectl delete pvc --cascade=foreground` does: the garbage collector
    # deletes the dependents (the Pod first, which releases the claim's protection), then the claim.
    core.delete_namespaced_persistent_volume_claim(name, runtime.namespace, _preload_content=False,
                                                   body=client.V1DeleteOptions(propagation_policy="Foreground"))

    await asyncio.to_thread(runtime._await_gone, runtime.claims, name, time.monotonic() + 60)
    for _ in range(100):
        if all(not items for items in objects(core, runtime, env_id).values()):
            break
        await asyncio.sleep(0.2)
    assert {k: [o.metadata.name for o in v] for k, v in objects(core, runtime, env_id).items() if v} == {}
    assert await runtime.inspect(env_id) is None


async def test_two_installations_never_see_each_other(kube) -> None:
    runtime, core, cluster, made = kube
    other = KubernetesRuntime(cluster.api_client(), namespace=runtime.namespace, scope="someone-else",
                              storage_class=cluster.storage_class, start_timeout=30, stop_grace_seconds=2)
    env_id = f"env-{uuid.uuid4().hex[:10]}"
    made.append(env_id)
    try:
        await runtime.ensure_running(spec(env_id))
        assert await other.inspect(env_id) is None
        assert env_id not in {s.env_id for s in await other.list()}
        await other.remove(env_id)  # silent: not its own
        assert (await runtime.inspect(env_id)).status == "running"
    finally:
        other.close()


async def test_the_agents_inventory_is_the_nodes_allocatable_gpus(kube) -> None:
    from remotegpu.adapters.runtime.kube_nodes import KubernetesGpuProbe

    runtime, core, cluster, made = kube
    probe = KubernetesGpuProbe(cluster.api_client())
    try:
        gpus = await asyncio.to_thread(probe.inventory)
        per_node = cluster.kubelet.gpus_per_node
        assert len(gpus) == per_node * len(cluster.nodes)
        assert {g.model for g in gpus} == {GPU_PRODUCT}
        assert [g.index for g in gpus] == list(range(len(gpus)))
        assert gpus[0].uuid == f"k8s-{cluster.nodes[0]}-0" and gpus[0].nvlink_group == gpus[per_node - 1].nvlink_group

        core.patch_node(cluster.nodes[0], {"spec": {"unschedulable": True}})  # cordoned: its GPUs leave
        try:
            probe.nodes.wait_for(lambda: probe.nodes._objects[cluster.nodes[0]].spec.unschedulable, 10)
            assert len(await asyncio.to_thread(probe.inventory)) == per_node * (len(cluster.nodes) - 1)
        finally:
            core.patch_node(cluster.nodes[0], {"spec": {"unschedulable": None}})
    finally:
        probe.close()


async def test_a_watch_resumed_after_etcd_compaction_gets_410_and_lists_again(kube) -> None:
    from kubernetes import client

    from remotegpu.adapters.runtime.kube_informer import Informer

    runtime, core, cluster, made = kube
    ns = runtime.namespace
    # Short watches, no bookmarks: each watch ends after 1 s and resumes from the last event seen.
    informer = Informer(core.list_namespaced_config_map, namespace=ns, label_selector="t=informer", name="cms",
                        watch_seconds=1, bookmarks=False)

    def config_map(name: str) -> Any:
        return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, labels={"t": "informer"}))

    core.create_namespaced_config_map(ns, config_map("before"))
    informer.start()
    try:
        assert informer.relists == 1 and informer.get("before") is not None
        # History moves on elsewhere, then is compacted: the informer's version is gone.
        for other in ("unwatched-1", "unwatched-2"):  # two: the watch resumes at list revision + 1
            core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=other)))
        await asyncio.to_thread(cluster.compact_etcd)
        assert await asyncio.to_thread(informer.wait_for, lambda: informer.relists >= 2, 15), informer.last_error
        # ...and it keeps following changes after the resync.
        core.create_namespaced_config_map(ns, config_map("after"))
        core.delete_namespaced_config_map("before", ns)
        assert await asyncio.to_thread(
            informer.wait_for, lambda: "after" in informer._objects and "before" not in informer._objects, 15), \
            (informer.relists, informer.last_error, sorted(informer._objects))
    finally:
        informer.stop()


async def test_remotegpu_runtime_kubernetes_selects_the_adapter_from_its_variables(kube, tmp_path) -> None:
    from remotegpu.adapters.runtime.select import select_runtime

    runtime, core, cluster, made = kube
    selected, name = select_runtime("kubernetes", data_dir=tmp_path, docker_scope="install-1", environ={
        "REMOTEGPU_KUBECONFIG": str(cluster.kubeconfig), "REMOTEGPU_KUBE_NAMESPACE": runtime.namespace,
        "REMOTEGPU_KUBE_STORAGE_CLASS": cluster.storage_class, "REMOTEGPU_KUBE_RUNTIME_CLASS": "nvidia"})
    try:
        assert name == "kubernetes" and isinstance(selected, KubernetesRuntime)
        assert (selected.namespace, selected.scope, selected.runtime_class) == (runtime.namespace, "install-1", "nvidia")
        assert await selected.list() == []  # it reaches the API server with that kubeconfig
    finally:
        selected.close()
    with pytest.raises(ValueError, match="REMOTEGPU_KUBECONFIG"):
        select_runtime("kubernetes", data_dir=tmp_path, environ={"REMOTEGPU_KUBECONFIG": str(tmp_path / "none")})


async def test_each_environment_gets_a_network_policy_admitting_its_workspace_and_the_servers(kube) -> None:
    """The objects, as the real API server stores them: a NetworkPolicy per environment that
    selects its Pod and admits ingress from the Pods of the same workspace (this installation)
    and from the platform's servers (by Pod and namespace labels), plus SSH's public port
    from anywhere with a NodePort Service; its workspace selector selects exactly that
    workspace's Pods; it is kept across stop/start, owned by the claim, and removed with
    the environment. (Enforcement needs a CNI plugin that implements NetworkPolicy: the
    test cluster has none, so only the objects are checked.)"""
    from kubernetes import client

    runtime, core, cluster, made = kube
    net = client.NetworkingV1Api(cluster.api_client())
    ws1, ws2 = f"ws-{uuid.uuid4().hex[:8]}", f"ws-{uuid.uuid4().hex[:8]}"
    a, b, c = (f"env-{uuid.uuid4().hex[:10]}" for _ in range(3))
    made.extend([a, b, c])
    for env_id, ws in ((a, ws1), (b, ws1), (c, ws2)):
        wanted = spec(env_id, gpu_indices=[], gpu_uuids=[], workspace_id=ws,
                      ports={22: free_port(), 8888: free_port()}, private_ports=frozenset({8888}))
        assert (await runtime.ensure_running(wanted)).status == "running"

    name = runtime.name_for(a)
    found = objects(core, runtime, a)
    (policy,) = found["networkpolicies"]
    (claim,) = found["pvcs"]
    (pod,) = found["pods"]
    assert policy.metadata.name == f"{name}-net"
    assert policy.metadata.labels["remotegpu.workspace_id"] == ws1 == pod.metadata.labels["remotegpu.workspace_id"]
    (owner,) = policy.metadata.owner_references
    assert (owner.kind, owner.uid) == ("PersistentVolumeClaim", claim.metadata.uid)
    assert policy.spec.policy_types == ["Ingress"]  # egress is not restricted by it (README)
    assert policy.spec.pod_selector.match_labels == {"remotegpu.pod": name}
    same, servers = policy.spec.ingress[0]._from
    assert policy.spec.ingress[0].ports is None
    assert same.pod_selector.match_labels == {"remotegpu.managed": "true", "remotegpu.scope": runtime.scope,
                                              "remotegpu.workspace_id": ws1}
    assert same.namespace_selector is None  # this namespace only
    assert servers.pod_selector.match_labels == {"app.kubernetes.io/name": "remotegpu",
                                                 "app.kubernetes.io/component": "serve"}
    assert servers.namespace_selector.match_labels == {"app.kubernetes.io/part-of": "remotegpu"}
    (public,) = policy.spec.ingress[1:]
    assert [p.port for p in public.ports] == [22] and public._from[0].ip_block.cidr == "0.0.0.0/0"  # not Jupyter's 8888

    # What each selector selects, asked of the API server: this Pod only; the workspace's Pods.
    def selected(labels: dict[str, str]) -> set[str]:
        selector = ",".join(f"{k}={v}" for k, v in labels.items())
        return {p.metadata.name for p in core.list_namespaced_pod(runtime.namespace, label_selector=selector).items}

    assert selected(policy.spec.pod_selector.match_labels) == {name}
    assert selected(same.pod_selector.match_labels) == {runtime.name_for(a), runtime.name_for(b)}
    (c_policy,) = objects(core, runtime, c)["networkpolicies"]
    assert selected(c_policy.spec.ingress[0]._from[0].pod_selector.match_labels) == {runtime.name_for(c)}

    # Kept across a stop (the Pod goes, the claim stays) and brought up to date on start.
    await runtime.stop(a)
    assert [p.metadata.uid for p in objects(core, runtime, a)["networkpolicies"]] == [policy.metadata.uid]
    await runtime.ensure_running(spec(a, gpu_indices=[], gpu_uuids=[], workspace_id=ws1, ports={8888: free_port()},
                                      private_ports=frozenset({8888})))
    (again,) = objects(core, runtime, a)["networkpolicies"]
    assert again.metadata.uid == policy.metadata.uid and len(again.spec.ingress) == 1  # no public port now

    # Removed with the environment; the others keep theirs.
    await runtime.remove(a)
    assert objects(core, runtime, a)["networkpolicies"] == []
    assert net.list_namespaced_network_policy(runtime.namespace, label_selector=f"{LABEL_ENV_ID}={b}").items

    # A runtime told not to make them makes none.
    plain = KubernetesRuntime(cluster.api_client(), namespace=runtime.namespace, scope=f"np-{uuid.uuid4().hex[:6]}",
                              storage_class=cluster.storage_class, start_timeout=30, stop_grace_seconds=2,
                              network_policy=False)
    d = f"env-{uuid.uuid4().hex[:10]}"
    try:
        assert (await plain.ensure_running(spec(d, gpu_indices=[], gpu_uuids=[]))).status == "running"
        assert objects(core, plain, d)["networkpolicies"] == [] and objects(core, plain, d)["pods"]
    finally:
        await plain.remove(d)
        plain.close()
