"""Where the platform's app proxy reaches an environment's JupyterLab in Kubernetes mode.

The platform's servers run inside the cluster (deploy/kubernetes/). For an environment on
a host whose runtime is ``kubernetes`` the proxy dials the environment's Pod directly:
its ``status.podIP`` and the container port (Jupyter's 8888) — the one endpoint behind the
environment's ``<name>-apps`` ClusterIP Service (that Service selects exactly this Pod).
Dialling the Pod rather than the Service's ClusterIP or DNS name:

* needs no kube-proxy and no cluster DNS in the servers' path (one hop fewer, and no
  stale conntrack entry after a restart: a new Pod has a new IP, seen on the next watch
  event); the ``-apps`` Service stays for what else wants a stable name;
* needs only ``get``/``list``/``watch`` on Pods in the environments' namespace for the
  servers' service account (deploy/kubernetes/20-rbac.yaml, Role ``remotegpu-apps``);
* the environments' NetworkPolicies (kubernetes_runtime.py) admit the servers' Pods by label.

The Pods come from an informer (watch, not a request per proxied request), narrowed by the
installation's scope label (``REMOTEGPU_DOCKER_SCOPE``: servers and the agent share it). A
Pod not running, being deleted, without an IP, or an env id that more than one Pod claims
answers None: the proxy then says JupyterLab does not answer (yet), as for Docker.
Authorization is the proxy's business (``apps.py``) and is checked on every request
before any of this is asked.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from remotegpu.adapters.runtime.kube_informer import Informer
from remotegpu.adapters.runtime.kubernetes_runtime import LABEL_SCOPE, scope_label
from remotegpu.application.environments.ports import LABEL_ENV_ID, LABEL_MANAGED

log = logging.getLogger(__name__)


class KubeAppEndpoints:
    def __init__(self, api_client: Any, *, namespace: str, scope: str) -> None:
        from kubernetes import client

        self.namespace = namespace
        selector = f"{LABEL_MANAGED}=true,{LABEL_SCOPE}={scope_label(scope)}"
        self.pods = Informer(client.CoreV1Api(api_client).list_namespaced_pod, namespace=namespace,
                             label_selector=selector, name="app-pods")
        self._started = False
        self._lock = threading.Lock()

    def address(self, env_id: str, container_port: int) -> tuple[str, int] | None:
        """The running Pod of ``env_id``: (its IP, ``container_port``), or None. Blocks on
        the first call while the informer lists (call it off the event loop)."""
        if not self._started:
            with self._lock:
                if not self._started:
                    self.pods.start(timeout=10)
                    self._started = True
        found = [p for p in self.pods.items() if (p.metadata.labels or {}).get(LABEL_ENV_ID) == env_id
                 and p.metadata.deletion_timestamp is None]
        if len(found) != 1:
            return None
        pod = found[0]
        status = pod.status
        if status is None or status.phase != "Running" or not status.pod_ip:
            return None
        return status.pod_ip, container_port

    def close(self) -> None:
        self.pods.stop()


class KubePods:
    """This server's ``KubeAppEndpoints``, made on first use and shared by the app proxy,
    the web terminal and the SSH gateway (one watch per server process); ``get()`` is None
    when this server reaches no cluster (no kubeconfig, not in a cluster, no client): the
    terminal and the gateway then keep the published (NodePort) address."""

    def __init__(self, *, kubeconfig: str | None, namespace: str, scope: str) -> None:
        self._kubeconfig = kubeconfig or None
        self._namespace = namespace
        self._scope = scope
        self._made = False
        self._endpoints: KubeAppEndpoints | None = None
        self._lock = threading.Lock()

    def get(self) -> KubeAppEndpoints | None:
        if not self._made:
            with self._lock:
                if not self._made:
                    try:
                        from remotegpu.adapters.runtime.kubernetes_runtime import load_api_client

                        self._endpoints = KubeAppEndpoints(load_api_client(self._kubeconfig), namespace=self._namespace,
                                                           scope=self._scope)
                    except Exception as exc:  # noqa: BLE001 - no kubeconfig, not in a cluster, no client
                        log.warning("Kubernetes environments' Pods cannot be reached from this server: %s", exc)
                    self._made = True
        return self._endpoints

    def close(self) -> None:
        if self._endpoints is not None:
            self._endpoints.close()
