"""Kubernetes runtime: environment create → Pod Running, through the adapter vs bare Kubernetes.

Starts the test control plane (tests/support/kube_cluster.py: etcd, kube-apiserver,
kube-scheduler, kube-controller-manager 1.20.2 and the kubelet stand-in), then, in the
same run, alternating:

    adapter      KubernetesRuntime.ensure_running(spec) until it returns "running":
                 claim (bound by the stand-in's provisioner) + Secret + Service + Pod,
                 the wait driven by the adapter's Pod watch
    bare pod     create_namespaced_pod of the same Pod spec (same resources, node
                 selector, no volume/Service/Secret), then a watch until Running
                 (the baseline: what Kubernetes itself costs)
    bare+pvc     the same with a claim created and bound first (the adapter's objects
                 without the adapter)

and the watch-driven status latency: the stand-in marks a Pod Running (patch of
its status) → the adapter's informer has it (``inspect`` says running), against a bare
watch on the same Pods started at the same time.

    .venv/bin/python bench/k8s.py [--rounds 10]

The aim (issue 13): adapter ≤ 1.3 × bare+pvc. The table says how loaded the machine was.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from remotegpu.adapters.runtime.kubernetes_runtime import KubernetesRuntime  # noqa: E402
from remotegpu.application.environments.ports import LABEL_GPU_MODEL, RuntimeSpec  # noqa: E402
from tests.support.kube_cluster import GPU_PRODUCT, binaries, start_cluster  # noqa: E402


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def wait_running(core, namespace: str, name: str, timeout: float = 60) -> None:
    from kubernetes import watch

    w = watch.Watch()
    for event in w.stream(core.list_namespaced_pod, namespace, field_selector=f"metadata.name={name}",
                          timeout_seconds=int(timeout)):
        pod = event["object"]
        if pod.status.phase == "Running":
            w.stop()
            return
    raise TimeoutError(name)


def wait_bound(core, namespace: str, name: str, timeout: float = 60) -> None:
    from kubernetes import watch

    w = watch.Watch()
    for event in w.stream(core.list_namespaced_persistent_volume_claim, namespace,
                          field_selector=f"metadata.name={name}", timeout_seconds=int(timeout)):
        if event["object"].status.phase == "Bound":
            w.stop()
            return
    raise TimeoutError(name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    bins = binaries()
    if bins is None:
        print("Kubernetes binaries missing: run deploy/ci/services.d/kubernetes.sh", file=sys.stderr)
        return 1
    from kubernetes import client

    load_before = os.getloadavg()[0]
    cluster = start_cluster(bins, gpu_nodes=4, gpus_per_node=8)
    try:
        api = cluster.api_client()
        core = client.CoreV1Api(api)
        ns = f"bench-{uuid.uuid4().hex[:6]}"
        cluster.create_namespace(ns)
        runtime = KubernetesRuntime(cluster.api_client(), namespace=ns, scope="bench",
                                    storage_class=cluster.storage_class, start_timeout=60, stop_grace_seconds=0)
        runtime._informers()
        times: dict[str, list[float]] = {"adapter": [], "bare pod": [], "bare+pvc": []}
        port = 30000

        def make_spec(i: int) -> RuntimeSpec:
            nonlocal port
            port += 1
            return RuntimeSpec(env_id=f"b-{i}-{uuid.uuid4().hex[:6]}", image="remotegpu/base:latest", cpu_cores=1,
                               memory_gib=1, gpu_indices=[0], gpu_uuids=["g"], ports={22: port},
                               env={"A": "b"}, disk_gib=10, labels={LABEL_GPU_MODEL: GPU_PRODUCT})

        for i in range(args.rounds):
            spec = make_spec(i)
            began = time.perf_counter()
            state = asyncio.run(runtime.ensure_running(spec))
            times["adapter"].append(time.perf_counter() - began)
            assert state.status == "running", state
            name = runtime.name_for(spec.env_id)
            claim = runtime.claims.get(name)
            template = runtime._pod(spec, name, claim, None)

            bare = make_spec(i)
            pod = runtime._pod(bare, f"bare-{i}", claim, None)
            pod.spec.volumes, pod.spec.containers[0].volume_mounts, pod.spec.containers[0].env_from = None, None, None
            pod.metadata.owner_references = None
            pod.metadata.labels = {"bench": "bare"}
            began = time.perf_counter()
            core.create_namespaced_pod(ns, pod)
            wait_running(core, ns, f"bare-{i}")
            times["bare pod"].append(time.perf_counter() - began)

            began = time.perf_counter()
            core.create_namespaced_persistent_volume_claim(ns, client.V1PersistentVolumeClaim(
                metadata=client.V1ObjectMeta(name=f"barepvc-{i}"),
                spec=client.V1PersistentVolumeClaimSpec(access_modes=["ReadWriteOnce"],
                                                        storage_class_name=cluster.storage_class,
                                                        resources={"requests": {"storage": "10Gi"}})))
            wait_bound(core, ns, f"barepvc-{i}")
            template.metadata.name = f"barepvc-{i}"
            template.metadata.labels = {"bench": "barepvc"}
            template.metadata.owner_references = None
            template.spec.containers[0].env_from = None
            template.spec.volumes[0].persistent_volume_claim.claim_name = f"barepvc-{i}"
            core.create_namespaced_pod(ns, template)
            wait_running(core, ns, f"barepvc-{i}")
            times["bare+pvc"].append(time.perf_counter() - began)

        # Watch-driven status latency: the Pod's status patch → the adapter's cache / a bare watch.
        latencies: dict[str, list[float]] = {"adapter informer": [], "bare watch": []}
        for i in range(args.rounds):
            spec = make_spec(1000 + i)
            asyncio.run(runtime.ensure_running(spec))
            name = runtime.name_for(spec.env_id)
            seen_bare: list[float] = []
            ready = threading.Event()

            def bare_watch() -> None:
                from kubernetes import watch

                w = watch.Watch()
                first = True
                for event in w.stream(core.list_namespaced_pod, ns, field_selector=f"metadata.name={name}",
                                      timeout_seconds=30):
                    if first:
                        first = False
                        ready.set()
                    ann = (event["object"].metadata.annotations or {}).get("bench/mark")
                    if ann:
                        seen_bare.append(time.perf_counter())
                        w.stop()
                        return

            thread = threading.Thread(target=bare_watch)
            thread.start()
            ready.wait(10)
            began = time.perf_counter()
            core.patch_namespaced_pod(name, ns, {"metadata": {"annotations": {"bench/mark": str(i)}}})
            runtime.pods.wait_for(lambda: (runtime.pods._objects[name].metadata.annotations or {}).get("bench/mark"), 30)
            latencies["adapter informer"].append(time.perf_counter() - began)
            thread.join(30)
            if seen_bare:
                latencies["bare watch"].append(seen_bare[0] - began)
        runtime.close()
    finally:
        cluster.stop()
    load_after = os.getloadavg()[0]

    print(f"\nKubernetes 1.20.2 test control plane (stand-in kubelet), {args.rounds} rounds; "
          f"load average {load_before:.1f} before, {load_after:.1f} after ({os.cpu_count()} CPUs)\n")
    print(f"{'create → Running':<22}{'median ms':>10}{'p90 ms':>10}{'× bare+pvc':>12}")
    base = statistics.median(times["bare+pvc"])
    for label, values in times.items():
        med = statistics.median(values)
        print(f"{label:<22}{med * 1000:>10.0f}{pct(values, 90) * 1000:>10.0f}{med / base:>12.2f}")
    print(f"\n{'status change → seen':<22}{'median ms':>10}{'p90 ms':>10}")
    for label, values in latencies.items():
        if values:
            print(f"{label:<22}{statistics.median(values) * 1000:>10.1f}{pct(values, 90) * 1000:>10.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
