"""EnvironmentRuntime on a Kubernetes cluster (``REMOTEGPU_RUNTIME=kubernetes``).

An environment is a handful of core/v1 objects in ONE namespace (``REMOTEGPU_KUBE_NAMESPACE``,
default ``remotegpu``), all named ``rgpu-<env id>-<hash of scope and id>`` and labelled
``remotegpu.managed=true``, ``remotegpu.env_id=<id>``, ``remotegpu.scope=<scope>`` (two
installations sharing a cluster or a namespace never see each other's objects):

* its disk: a PersistentVolumeClaim (``ReadWriteOnce``, ``disk_gib`` or 10 GiB, storage
  class from configuration). The claim is the environment's anchor: every other object has
  an owner reference to it, so deleting the claim (or the namespace) deletes everything;
* its container: a Pod with the claim mounted at ``/root/workspace``; CPU/memory requests =
  limits (Guaranteed QoS), GPUs as ``nvidia.com/gpu`` limits, the GPU model as a
  ``nvidia.com/gpu.product`` node selector (GPU feature discovery's label), the runtime
  class and image pull secrets from configuration. Stop deletes the Pod and keeps the claim;
  start makes a new Pod on the same claim;
* its variables: a Secret (``envFrom``), so secrets never sit in the Pod's spec;
* its dataset/model mounts: per version an emptyDir filled by an init container (the
  platform's image, ``kube_mount_fetch`` with the environment's own storage token) and
  mounted read-only at ``/datasets/<name>`` / ``/models/<name>``: downloaded on every
  start of the Pod, onto the node the scheduler chose (see ``_data_mounts``);
* its ports: a Service selecting the Pod. Public ports (SSH) are NodePorts numbered as the
  platform allocated them (the platform's port range must lie inside the cluster's
  ``--service-node-port-range``); private ports (Jupyter) go to a second, ClusterIP-only
  Service that the platform's app proxy reaches from inside the cluster. Both Services
  live as long as the claim (the platform holds an environment's ports until it is deleted);
* its network: a NetworkPolicy (networking.k8s.io/v1, ``<name>-net``, owned by the claim)
  selecting its Pod, Ingress only. It admits (1) the Pods of the same workspace in this
  installation (label ``remotegpu.workspace_id``; an environment without a workspace: only
  itself), (2) the platform's servers (``platform_pods`` in namespaces with
  ``platform_namespaces`` labels; deploy/kubernetes/ labels them so) for the app proxy, the
  web terminal and the SSH gateway, (3) with a NodePort/LoadBalancer Service, the public
  ports (SSH) from any address — as a Docker host publishes them; sshd's keys guard them
  (omitted with ``ClusterIP``: SSH only through the platform's gateway). Egress is not
  restricted by it (Ingress is its only policy type): environments reach DNS, the
  registry, the platform's API and the internet; an operator who wants less adds a
  namespace-wide egress policy of their own. Enforced only by a CNI plugin that implements
  NetworkPolicy (Calico, Cilium, ...); without one the objects exist and nothing is filtered.

State comes from informers (list + watch from the resourceVersion, resync on 410 Gone: see
kube_informer.py), never from polling loops; every call is level-triggered and idempotent
(a crash between creating the claim and the Pod converges on the next ``ensure_running``).

A Pod the scheduler cannot place stays Pending: ``ensure_running`` and ``inspect`` report it
``missing`` with the scheduler's reason (its PodScheduled condition message), so the
platform shows why it waits. The platform's quota, queue and billing decide WHAT runs;
the cluster's scheduler decides on WHICH node (see the README, "Kubernetes").

Only core/v1 APIs that Kubernetes 1.20 and current releases share are used.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

from remotegpu.adapters.runtime.kube_informer import Informer, wait_seconds
from remotegpu.adapters.runtime.threaded import ThreadedRuntime
from remotegpu.application.environments.ports import (
    LABEL_ENV_ID,
    LABEL_GENERATION,
    LABEL_GPU_MODEL,
    LABEL_HOST,
    LABEL_MANAGED,
    PENDING_PREFIX,
    WORKSPACE_PATH,
    EnvironmentRuntimeError,
    RuntimeSpec,
    RuntimeState,
    generation_of,
)

log = logging.getLogger(__name__)

LABEL_SCOPE = "remotegpu.scope"
LABEL_WORKSPACE = "remotegpu.workspace_id"
LABEL_POD = "remotegpu.pod"
#: Who the platform's servers are (deploy/kubernetes/30-serve.yaml, 00-namespaces.yaml).
PLATFORM_PODS = {"app.kubernetes.io/name": "remotegpu", "app.kubernetes.io/component": "serve"}
PLATFORM_NAMESPACES = {"app.kubernetes.io/part-of": "remotegpu"}
ANNOTATION_PORTS = "remotegpu.io/ports"
ANNOTATION_LABELS = "remotegpu.io/labels"
ANNOTATION_DISK = "remotegpu.io/disk-gib"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
UNSCHEDULABLE = "unschedulable: "
DEFAULT_DISK_GIB = 10
MOUNT_FETCH_DIR = "/mnt/remotegpu-data"  # where a data mount's init container writes (its emptyDir)
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_ENV_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def _label_value(value: str) -> str | None:
    return value if len(value) <= 63 and _LABEL_VALUE.match(value) else None


def scope_label(scope: str) -> str:
    """An installation's scope as the value of its objects' ``remotegpu.scope`` label."""
    return _label_value(scope) or hashlib.sha256(scope.encode()).hexdigest()[:16]


def gpu_product(model: str) -> str:
    """A GPU model as GPU feature discovery labels it: ``NVIDIA A100-SXM4-80GB`` →
    ``NVIDIA-A100-SXM4-80GB``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", model.strip()).strip("-_.")[:63]


class KubernetesRuntime(ThreadedRuntime):
    """EnvironmentRuntime (with exec) on one namespace of a Kubernetes cluster."""

    #: Dataset/model mounts are downloaded in the Pod (init containers), not in the agent's
    #: cache: the agent hands ``data_mounts`` over as they are.
    mounts_data_itself = True

    def __init__(
        self, api_client: Any = None, *, namespace: str = "remotegpu", scope: str = "default",
        storage_class: str | None = None, service_type: str = "NodePort", image_pull_secret: str | None = None,
        runtime_class: str | None = None, gpu_resource: str = "nvidia.com/gpu", start_timeout: float = 60.0,
        stop_grace_seconds: int = 5, kubeconfig: str | None = None, mount_image: str | None = None,
        platform_url: str | None = None, network_policy: bool = True, platform_pods: dict[str, str] | None = None,
        platform_namespaces: dict[str, str] | None = None,
    ) -> None:
        from kubernetes import client

        if api_client is None:
            api_client = load_api_client(kubeconfig)
        self._api = api_client
        self._core = client.CoreV1Api(api_client)
        self._net = client.NetworkingV1Api(api_client)
        self.network_policy = network_policy
        self.platform_pods = dict(platform_pods or PLATFORM_PODS)
        self.platform_namespaces = dict(platform_namespaces or PLATFORM_NAMESPACES)
        self.namespace = namespace
        self.scope = scope
        self._scope_value = scope_label(scope)
        self.storage_class = storage_class or None
        if service_type not in ("NodePort", "LoadBalancer", "ClusterIP"):
            raise ValueError(f"service type must be NodePort, LoadBalancer or ClusterIP, not {service_type!r}")
        self.service_type = service_type
        self.image_pull_secret = image_pull_secret or None
        self.runtime_class = runtime_class or None
        self.gpu_resource = gpu_resource
        self.start_timeout = start_timeout
        self.stop_grace_seconds = stop_grace_seconds
        # Data mounts: the image of the init containers that download them (the platform's
        # own image: it has kube_mount_fetch), and where they reach the platform.
        self.mount_image = mount_image or None
        self.platform_url = platform_url or None
        self._locks = {}
        selector = f"{LABEL_MANAGED}=true,{LABEL_SCOPE}={self._scope_value}"
        self.pods = Informer(self._core.list_namespaced_pod, namespace=namespace, label_selector=selector, name="pods")
        self.claims = Informer(self._core.list_namespaced_persistent_volume_claim, namespace=namespace,
                               label_selector=selector, name="claims")
        self._started = False
        self._start_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=6, thread_name_prefix="kube-runtime")

    # -- lifecycle ----------------------------------------------------------------

    def _informers(self) -> None:
        if self._started:
            return
        with self._start_lock:
            if not self._started:
                self.pods.start()
                self.claims.start()
                self._started = True

    def close(self) -> None:
        self.pods.stop()
        self.claims.stop()
        self._pool.shutdown(wait=False)

    def gpus_by_node(self) -> dict[str, int]:
        """GPUs the Pods of this installation request, by the node they are bound to
        (Pods that ended or are being deleted not counted): the fleet view's "allocated"."""
        self._informers()
        out: dict[str, int] = {}
        for pod in self.pods.items():
            phase = pod.status.phase if pod.status is not None else None
            if not pod.spec.node_name or pod.metadata.deletion_timestamp is not None or phase in ("Succeeded", "Failed"):
                continue
            for container in pod.spec.containers or []:
                limits = (container.resources.limits if container.resources is not None else None) or {}
                try:
                    count = int(limits.get(self.gpu_resource, 0))
                except (TypeError, ValueError):
                    count = 0
                if count:
                    out[pod.spec.node_name] = out.get(pod.spec.node_name, 0) + count
        return out

    # -- names ----------------------------------------------------------------------

    def name_for(self, env_id: str) -> str:
        """The name of every object of ``env_id`` (a DNS-1035 label, ≤ 54 characters)."""
        slug = re.sub(r"[^a-z0-9-]", "-", env_id.lower())[:40].strip("-") or "env"
        digest = hashlib.sha256(f"{self.scope}\0{env_id}".encode()).hexdigest()[:8]
        return f"rgpu-{slug}-{digest}"

    def _labels(self, env_id: str, extra: dict[str, str] | None = None) -> dict[str, str]:
        labels = {LABEL_MANAGED: "true", LABEL_SCOPE: self._scope_value}
        if _label_value(env_id):
            labels[LABEL_ENV_ID] = env_id
        for key, value in (extra or {}).items():
            if key in (LABEL_GENERATION, LABEL_HOST) and _label_value(value):
                labels[key] = value
        return labels

    def _validate_env_id(self, env_id: str) -> None:
        if not _ENV_ID.match(env_id):
            raise ValueError(f"invalid environment id for Kubernetes labels: {env_id!r}")

    # -- the port -------------------------------------------------------------------

    def _ensure_running(self, spec: RuntimeSpec) -> RuntimeState:
        from kubernetes.client.exceptions import ApiException

        self._informers()
        name = self.name_for(spec.env_id)
        pod = self.pods.get(name)
        if pod is not None and pod.metadata.deletion_timestamp is None:
            state = self._state(spec.env_id, pod, self.claims.get(name))
            if state.status != "failed":
                if _scheduler_verdict(state):  # still cannot be placed: say so at once
                    return state
                if state.status == "missing":  # pending: give it a moment more, then report why
                    return self._await_start(spec.env_id, name, time.monotonic() + min(5.0, self.start_timeout))
                return state
            self._delete_pod(name, grace=0)  # failed: a new Pod on the same disk
        if pod is not None:
            self._await_gone(self.pods, name, time.monotonic() + self.stop_grace_seconds + 30)
        try:
            claim = self._ensure_claim(spec, name)
            # The Secrets and Services depend only on the claim (their owner): made side by side.
            futures = [self._pool.submit(self._ensure_env_secret, spec, name, claim),
                       self._pool.submit(self._ensure_pull_secret, spec, name, claim),
                       self._pool.submit(self._ensure_services, spec, name, claim),
                       self._pool.submit(self._ensure_network_policy, spec, name, claim)]
            results = [f.result() for f in futures]
            pull_secret = results[1]
            created = self._core.create_namespaced_pod(self.namespace, self._pod(spec, name, claim, pull_secret))
            self.pods.observe(created)
        except ApiException as exc:
            if exc.status == 409:  # made meanwhile (another call, a restart): converge on it
                return self._await_start(spec.env_id, name, time.monotonic() + self.start_timeout)
            raise EnvironmentRuntimeError(f"Kubernetes refused environment {spec.env_id}: {_reason(exc)}") from None
        return self._await_start(spec.env_id, name, time.monotonic() + self.start_timeout)

    def _stop(self, env_id: str) -> None:
        self._informers()
        name = self.name_for(env_id)
        if self.pods.get(name) is None:
            return
        self._delete_pod(name, grace=self.stop_grace_seconds)
        self._await_gone(self.pods, name, time.monotonic() + self.stop_grace_seconds + 30)

    def _remove(self, env_id: str) -> None:
        from kubernetes import client

        self._informers()
        name = self.name_for(env_id)
        if self.pods.get(name) is not None:
            self._delete_pod(name, grace=0)
        # The claim owns the Services and Secrets (the garbage collector removes them too);
        # deleted here directly so nothing lingers when the collector lags.
        for service in (name, f"{name}-apps"):
            _ignore_404(self._core.delete_namespaced_service, service, self.namespace)
        for secret in (f"{name}-env", f"{name}-pull"):
            _ignore_404(self._core.delete_namespaced_secret, secret, self.namespace)
        if self.network_policy:
            _ignore_404(self._net.delete_namespaced_network_policy, f"{name}-net", self.namespace)
        if self.claims.get(name) is not None:
            _ignore_404(self._core.delete_namespaced_persistent_volume_claim, name, self.namespace,
                        body=client.V1DeleteOptions(propagation_policy="Foreground"))
        deadline = time.monotonic() + self.stop_grace_seconds + 60
        self._await_gone(self.pods, name, deadline)
        self._await_gone(self.claims, name, deadline)

    def _inspect(self, env_id: str) -> RuntimeState | None:
        self._informers()
        name = self.name_for(env_id)
        pod, claim = self.pods.get(name), self.claims.get(name)
        if pod is None and claim is None:
            return None
        return self._state(env_id, pod, claim)

    def _list(self) -> list[RuntimeState]:
        self._informers()
        by_id: dict[str, tuple[Any, Any]] = {}
        for pod in self.pods.items():
            env_id = (pod.metadata.labels or {}).get(LABEL_ENV_ID)
            if env_id:
                by_id[env_id] = (pod, None)
        for claim in self.claims.items():
            env_id = (claim.metadata.labels or {}).get(LABEL_ENV_ID)
            if env_id:
                by_id[env_id] = (by_id.get(env_id, (None, None))[0], claim)
        return [self._state(env_id, pod, claim) for env_id, (pod, claim) in sorted(by_id.items())]

    async def exec(self, env_id: str, argv: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
        import asyncio

        self._validate_env_id(env_id)
        return await asyncio.to_thread(self._exec, env_id, list(argv), dict(env or {}))

    def _exec(self, env_id: str, argv: list[str], env: dict[str, str]) -> tuple[int, str]:
        """Through the API server's pods/exec. ``env`` travels on stdin (base64), never in
        the command line."""
        from kubernetes.stream import stream

        self._informers()
        state = self._inspect(env_id)
        if state is None or state.status != "running":
            raise EnvironmentRuntimeError(f"environment {env_id} is not running")
        script = ('while IFS= read -r k && [ -n "$k" ]; do IFS= read -r v; '
                  'export "$k=$(printf %s "$v" | base64 -d)"; done; exec "$@"')
        stdin = "".join(f"{k}\n{base64.b64encode(v.encode()).decode()}\n" for k, v in env.items()) + "\n"
        try:
            resp = stream(self._core.connect_get_namespaced_pod_exec, self.name_for(env_id), self.namespace,
                          container="environment", command=["/bin/sh", "-c", script, "remotegpu-exec", *argv],
                          stdin=True, stdout=True, stderr=True, tty=False, _preload_content=False)
            resp.write_stdin(stdin)
            output: list[str] = []
            while resp.is_open():
                resp.update(timeout=1)
                output.append(resp.read_stdout() or "")
                output.append(resp.read_stderr() or "")
            resp.close()
            return int(resp.returncode or 0), "".join(output)
        except Exception as exc:  # noqa: BLE001 - the kubelet could not be reached, the Pod went
            raise EnvironmentRuntimeError(f"exec in environment {env_id} failed: {exc}") from None

    # -- objects --------------------------------------------------------------------

    def _owner(self, claim: Any) -> list[Any]:
        from kubernetes import client

        return [client.V1OwnerReference(api_version="v1", kind="PersistentVolumeClaim", name=claim.metadata.name,
                                        uid=claim.metadata.uid, block_owner_deletion=False, controller=True)]

    def _ensure_claim(self, spec: RuntimeSpec, name: str) -> Any:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        claim = self.claims.get(name)
        if claim is not None and claim.metadata.deletion_timestamp is None:
            return claim
        if claim is not None:  # being deleted (remove ran): wait until it is gone, then a new one
            self._await_gone(self.claims, name, time.monotonic() + 60)
        size = spec.disk_gib or DEFAULT_DISK_GIB
        body = client.V1PersistentVolumeClaim(
            metadata=client.V1ObjectMeta(name=name, labels=self._labels(spec.env_id, spec.labels),
                                         annotations={ANNOTATION_DISK: str(size)}),
            spec=client.V1PersistentVolumeClaimSpec(
                access_modes=["ReadWriteOnce"], storage_class_name=self.storage_class,
                resources={"requests": {"storage": f"{size}Gi"}}))
        try:
            claim = self._core.create_namespaced_persistent_volume_claim(self.namespace, body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            claim = self._core.read_namespaced_persistent_volume_claim(name, self.namespace)
        self.claims.observe(claim)
        return claim

    def _apply_secret(self, name: str, claim: Any, env_id: str, data: dict[str, str], kind: str | None) -> None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        body = client.V1Secret(
            metadata=client.V1ObjectMeta(name=name, labels=self._labels(env_id), owner_references=self._owner(claim)),
            string_data=data, type=kind or "Opaque")
        try:
            self._core.create_namespaced_secret(self.namespace, body, _preload_content=False)
        except ApiException as exc:
            if exc.status != 409:
                raise
            self._core.replace_namespaced_secret(name, self.namespace, body, _preload_content=False)

    def _ensure_env_secret(self, spec: RuntimeSpec, name: str, claim: Any) -> None:
        self._apply_secret(f"{name}-env", claim, spec.env_id, dict(spec.env), None)

    def _ensure_pull_secret(self, spec: RuntimeSpec, name: str, claim: Any) -> str | None:
        if spec.registry_auth is None:
            return None
        registry, username, password = spec.registry_auth
        auth = base64.b64encode(f"{username}:{password}".encode()).decode()
        config = json.dumps({"auths": {registry: {"username": username, "password": password, "auth": auth}}})
        self._apply_secret(f"{name}-pull", claim, spec.env_id, {".dockerconfigjson": config},
                           "kubernetes.io/dockerconfigjson")
        return f"{name}-pull"

    def _ensure_services(self, spec: RuntimeSpec, name: str, claim: Any) -> None:
        public = {cp: hp for cp, hp in spec.ports.items() if cp not in spec.private_ports}
        private = {cp: hp for cp, hp in spec.ports.items() if cp in spec.private_ports}
        self._apply_service(spec.env_id, name, claim, public, self.service_type)
        if private:
            self._apply_service(spec.env_id, f"{name}-apps", claim, private, "ClusterIP")

    def _apply_service(self, env_id: str, name: str, claim: Any, ports: dict[int, int], kind: str) -> None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        if not ports:
            _ignore_404(self._core.delete_namespaced_service, name, self.namespace)
            return
        wanted = [client.V1ServicePort(name=f"p{cp}", port=cp, target_port=cp, protocol="TCP",
                                       node_port=hp if kind != "ClusterIP" else None)
                  for cp, hp in sorted(ports.items())]
        selector = {LABEL_MANAGED: "true", LABEL_SCOPE: self._scope_value, "remotegpu.pod": self.name_for(env_id)}
        body = client.V1Service(
            metadata=client.V1ObjectMeta(name=name, labels=self._labels(env_id), owner_references=self._owner(claim),
                                         annotations={ANNOTATION_PORTS: json.dumps({str(k): v for k, v in ports.items()})}),
            spec=client.V1ServiceSpec(type=kind, selector=selector, ports=wanted))
        try:
            self._core.create_namespaced_service(self.namespace, body, _preload_content=False)
            return
        except ApiException as exc:
            # It exists (409) — or its NodePort is held, by its own earlier copy (422): compare.
            if exc.status not in (409, 422):
                raise
            try:
                current = self._core.read_namespaced_service(name, self.namespace)
            except ApiException as missing:
                if missing.status == 404:
                    raise exc from None  # the port is someone else's
                raise
        have = {(p.port, p.node_port if kind != "ClusterIP" else None) for p in current.spec.ports or []}
        if have != {(p.port, p.node_port) for p in wanted} or current.spec.type != kind:
            self._core.patch_namespaced_service(name, self.namespace, {
                "metadata": {"annotations": body.metadata.annotations},
                "spec": {"type": kind, "ports": [self._api.sanitize_for_serialization(p) for p in wanted]}})

    def network_policy_for(self, spec: RuntimeSpec, name: str, claim: Any) -> dict[str, Any]:
        """The environment's NetworkPolicy (see the module's docstring)."""
        workspace = _label_value(spec.workspace_id or "")
        same = ({LABEL_MANAGED: "true", LABEL_SCOPE: self._scope_value, LABEL_WORKSPACE: workspace} if workspace
                else {LABEL_POD: name})
        ingress: list[dict[str, Any]] = [{"from": [
            {"podSelector": {"matchLabels": same}},
            {"namespaceSelector": {"matchLabels": self.platform_namespaces},
             "podSelector": {"matchLabels": self.platform_pods}},
        ]}]
        public = sorted(cp for cp in spec.ports if cp not in spec.private_ports)
        if public and self.service_type != "ClusterIP":
            ingress.append({"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
                            "ports": [{"protocol": "TCP", "port": cp} for cp in public]})
        labels = self._labels(spec.env_id)
        if workspace:
            labels[LABEL_WORKSPACE] = workspace
        return {
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": f"{name}-net", "labels": labels,
                         "ownerReferences": [self._api.sanitize_for_serialization(o) for o in self._owner(claim)]},
            "spec": {"podSelector": {"matchLabels": {LABEL_POD: name}}, "policyTypes": ["Ingress"], "ingress": ingress},
        }

    def _ensure_network_policy(self, spec: RuntimeSpec, name: str, claim: Any) -> None:
        from kubernetes.client.exceptions import ApiException

        if not self.network_policy:
            return
        body = self.network_policy_for(spec, name, claim)
        try:
            self._net.create_namespaced_network_policy(self.namespace, body, _preload_content=False)
        except ApiException as exc:
            if exc.status != 409:
                raise
            # Exists (a restart, a start after a stop): brought to what is wanted now.
            self._net.patch_namespaced_network_policy(f"{name}-net", self.namespace, body, _preload_content=False)

    def _pod(self, spec: RuntimeSpec, name: str, claim: Any, pull_secret: str | None) -> Any:
        from kubernetes import client

        gpus = len(spec.gpu_uuids) or len(spec.gpu_indices)
        cpu = f"{int(round(spec.cpu_cores * 1000))}m"
        memory = f"{int(round(spec.memory_gib * 1024))}Mi"
        limits = {"cpu": cpu, "memory": memory}
        if gpus:
            limits[self.gpu_resource] = str(gpus)
        node_selector = None
        model = spec.labels.get(LABEL_GPU_MODEL)
        if gpus and model:
            node_selector = {GPU_PRODUCT_LABEL: gpu_product(model)}
        init_containers, volumes, mounts = self._data_mounts(spec, name, limits)
        secrets = [s for s in (self.image_pull_secret, pull_secret) if s]
        labels = {**self._labels(spec.env_id, spec.labels), LABEL_POD: name}
        if _label_value(spec.workspace_id or ""):
            labels[LABEL_WORKSPACE] = spec.workspace_id  # what the workspace's NetworkPolicies select
        annotations = {ANNOTATION_PORTS: json.dumps({str(k): v for k, v in spec.ports.items()}),
                       ANNOTATION_LABELS: json.dumps(spec.labels, sort_keys=True)}
        container = client.V1Container(
            name="environment", image=spec.image, image_pull_policy="IfNotPresent",
            env_from=[client.V1EnvFromSource(secret_ref=client.V1SecretEnvSource(name=f"{name}-env"))],
            ports=[client.V1ContainerPort(container_port=cp, protocol="TCP") for cp in sorted(spec.ports)],
            resources=client.V1ResourceRequirements(requests=dict(limits), limits=limits),
            volume_mounts=[client.V1VolumeMount(name="workspace", mount_path=WORKSPACE_PATH), *mounts],
        )
        return client.V1Pod(
            metadata=client.V1ObjectMeta(name=name, labels=labels, annotations=annotations,
                                         owner_references=self._owner(claim)),
            spec=client.V1PodSpec(
                containers=[container], restart_policy="Always", hostname=name[:63],
                automount_service_account_token=False, enable_service_links=False,
                termination_grace_period_seconds=self.stop_grace_seconds, node_selector=node_selector,
                runtime_class_name=self.runtime_class,
                image_pull_secrets=[client.V1LocalObjectReference(name=s) for s in secrets] or None,
                init_containers=init_containers or None,
                volumes=[client.V1Volume(name="workspace", persistent_volume_claim=client.V1PersistentVolumeClaimVolumeSource(
                    claim_name=claim.metadata.name)), *volumes],
            ),
        )

    def _data_mounts(self, spec: RuntimeSpec, name: str, limits: dict[str, str]) -> tuple[list[Any], list[Any], list[Any]]:
        """Per dataset/model version: an emptyDir, an init container that downloads the
        version into it (``remotegpu.entrypoints.kube_mount_fetch`` with the environment's
        own storage token, from its Secret), and a read-only mount of it at the version's
        path in the environment's container. The init containers get the environment's
        CPU/memory (requests = limits: the Pod stays Guaranteed and asks for no more)."""
        from kubernetes import client

        if not spec.data_mounts:
            return [], [], []
        if not self.mount_image:
            raise EnvironmentRuntimeError(
                f"environment {spec.env_id} mounts datasets/models: set REMOTEGPU_KUBE_MOUNT_IMAGE (the platform's image)")
        inits, volumes, mounts = [], [], []
        extra_env = [client.V1EnvVar(name="REMOTEGPU_URL", value=self.platform_url)] if self.platform_url else None
        for i, m in enumerate(spec.data_mounts):
            volume = f"data-{i}"
            volumes.append(client.V1Volume(name=volume, empty_dir=client.V1EmptyDirVolumeSource()))
            inits.append(client.V1Container(
                name=f"mount-{i}", image=self.mount_image, image_pull_policy="IfNotPresent",
                command=["python3", "-m", "remotegpu.entrypoints.kube_mount_fetch", m.kind, m.repository_id,
                         str(m.version), MOUNT_FETCH_DIR],
                env_from=[client.V1EnvFromSource(secret_ref=client.V1SecretEnvSource(name=f"{name}-env"))], env=extra_env,
                resources=client.V1ResourceRequirements(
                    requests={k: v for k, v in limits.items() if k in ("cpu", "memory")},
                    limits={k: v for k, v in limits.items() if k in ("cpu", "memory")}),
                volume_mounts=[client.V1VolumeMount(name=volume, mount_path=MOUNT_FETCH_DIR)]))
            mounts.append(client.V1VolumeMount(name=volume, mount_path=m.target, read_only=True))
        return inits, volumes, mounts

    def _delete_pod(self, name: str, grace: int) -> None:
        _ignore_404(self._core.delete_namespaced_pod, name, self.namespace, grace_period_seconds=grace)

    # -- waiting (driven by watch events) ----------------------------------------

    def _await_gone(self, informer: Informer, name: str, deadline: float) -> None:
        if not informer.wait_for(lambda: informer._objects.get(name) is None, wait_seconds(deadline)):
            raise EnvironmentRuntimeError(f"{informer.name[:-1]} {name} was not deleted in time")

    def _await_start(self, env_id: str, name: str, deadline: float) -> RuntimeState:
        """Wait until the Pod runs, fails, or the scheduler says it cannot be placed."""

        def settled() -> Any:
            pod = self.pods._objects.get(name)
            if pod is None:
                return None
            state = self._state(env_id, pod, self.claims._objects.get(name))
            if state.status in ("running", "failed"):
                return state
            if _scheduler_verdict(state):
                return state  # the scheduler's verdict (unbound claims are only a moment's wait)
            return None

        state = self.pods.wait_for(settled, wait_seconds(deadline))
        if not state:
            pod = self.pods.get(name)
            if pod is None:
                raise EnvironmentRuntimeError(f"environment {env_id}: its Pod disappeared while starting")
            state = self._state(env_id, pod, self.claims.get(name))
        if state.status == "failed":
            raise EnvironmentRuntimeError(f"environment {env_id} failed to start: {state.message}")
        return state

    # -- state ----------------------------------------------------------------------

    def _state(self, env_id: str, pod: Any, claim: Any) -> RuntimeState:
        source = pod if pod is not None else claim
        labels = source.metadata.labels or {}
        generation = generation_of(labels)
        host_id = labels.get(LABEL_HOST, "")
        if pod is None or pod.metadata.deletion_timestamp is not None:
            return RuntimeState(env_id, "stopped", None, generation=generation, host_id=host_id)
        status = pod.status
        phase = status.phase if status is not None else "Pending"
        container_id = pod.metadata.uid
        if phase in ("Failed", "Succeeded"):
            return RuntimeState(env_id, "failed", container_id, message=_terminated(pod) or f"Pod {phase.lower()}",
                                generation=generation, host_id=host_id)
        waiting = _waiting(pod)
        if waiting and waiting[0] in ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CrashLoopBackOff",
                                      "CreateContainerConfigError", "CreateContainerError"):
            return RuntimeState(env_id, "failed", container_id, message=f"{waiting[0]}: {waiting[1]}".strip(": "),
                                generation=generation, host_id=host_id)
        if phase == "Running" and _ready(pod):
            ports = {int(k): int(v) for k, v in json.loads((pod.metadata.annotations or {}).get(ANNOTATION_PORTS, "{}")).items()}
            started = status.start_time
            if started is not None and started.tzinfo is None:
                started = started.replace(tzinfo=timezone.utc)
            return RuntimeState(env_id, "running", container_id, ports, started, generation=generation, host_id=host_id)
        unschedulable = _unschedulable(pod)
        if unschedulable is not None:
            message = f"{PENDING_PREFIX}{UNSCHEDULABLE}{unschedulable}"
        elif pod.spec.node_name:
            message = f"{PENDING_PREFIX}starting on node {pod.spec.node_name}" + (f": {waiting[0]}" if waiting else "")
        else:
            message = f"{PENDING_PREFIX}waiting for the cluster scheduler"
        return RuntimeState(env_id, "missing", container_id, message=message, generation=generation, host_id=host_id)


# -- helpers ------------------------------------------------------------------------


def load_api_client(kubeconfig: str | None = None) -> Any:
    """An ApiClient from ``kubeconfig`` (a path), or the in-cluster service account when
    None/empty (the platform running as a Pod)."""
    from kubernetes import client, config

    configuration = client.Configuration()
    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    else:
        config.load_incluster_config(client_configuration=configuration)
    configuration.connection_pool_maxsize = 16
    return client.ApiClient(configuration)


def _ignore_404(call: Any, *args: Any, **kwargs: Any) -> None:
    from kubernetes.client.exceptions import ApiException

    try:
        # Not deserialized: 1.20 answers some deletes with a Status where current clients expect the object.
        call(*args, _preload_content=False, **kwargs)
    except ApiException as exc:
        if exc.status != 404:
            raise EnvironmentRuntimeError(f"Kubernetes: {_reason(exc)}") from None


def _reason(exc: Any) -> str:
    try:
        return json.loads(exc.body).get("message") or f"{exc.status} {exc.reason}"
    except Exception:  # noqa: BLE001 - not a Status body
        return f"{exc.status} {exc.reason}"


def _scheduler_verdict(state: RuntimeState) -> bool:
    """The scheduler said the Pod fits no node (not merely: its claim is not bound yet)."""
    return state.status == "missing" and state.message.startswith(PENDING_PREFIX + UNSCHEDULABLE) \
        and "PersistentVolumeClaim" not in state.message


def _conditions(pod: Any) -> list[Any]:
    return list((pod.status.conditions if pod.status is not None else None) or [])


def _ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in _conditions(pod))


def _unschedulable(pod: Any) -> str | None:
    for c in _conditions(pod):
        if c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable":
            return c.message or "no node fits"
    return None


def _waiting(pod: Any) -> tuple[str, str] | None:
    for s in (pod.status.container_statuses if pod.status is not None else None) or []:
        if s.state is not None and s.state.waiting is not None and s.state.waiting.reason:
            return s.state.waiting.reason, s.state.waiting.message or ""
    return None


def _terminated(pod: Any) -> str:
    for s in (pod.status.container_statuses if pod.status is not None else None) or []:
        t = s.state.terminated if s.state is not None else None
        if t is not None:
            return f"exited with code {t.exit_code}" + (f" ({t.reason})" if t.reason else "")
    return (pod.status.message or "") if pod.status is not None else ""


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
