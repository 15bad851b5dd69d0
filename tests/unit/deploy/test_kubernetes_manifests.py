"""deploy/kubernetes/: the manifests parse, use only APIs Kubernetes 1.20 and current
releases share, and hang together: selectors select their Pods, Services and probes
name ports that exist, the Ingress reaches the Service for the console host and the apps
wildcard host, and the runtime adapter's account may do what the adapter does.
(Server-side dry-run against a real API server is a separate, integration check.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

MANIFESTS = Path(__file__).resolve().parents[3] / "deploy" / "kubernetes"
ALLOWED = {
    "v1": {"Namespace", "ConfigMap", "Secret", "Service", "ServiceAccount", "PersistentVolumeClaim"},
    "apps/v1": {"Deployment"},
    "networking.k8s.io/v1": {"Ingress"},
    "rbac.authorization.k8s.io/v1": {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"},
}
#: What the Kubernetes runtime adapter (adapters/runtime/kubernetes_runtime.py) does in
#: the environments' namespace: a Pod per environment (and exec into it), its PVC, its
#: Services (patched), its variables' Secret (replaced), all watched from a
#: resourceVersion; Events read; cluster-wide: Nodes (GPU capacity and models).
ADAPTER_NEEDS = {
    "pods": {"get", "list", "watch", "create", "delete"},
    "pods/exec": {"create", "get"},
    "persistentvolumeclaims": {"get", "list", "watch", "create", "delete"},
    "services": {"get", "list", "watch", "create", "delete", "patch"},
    "secrets": {"get", "list", "create", "update", "delete"},
    "events": {"get", "list", "watch"},
}
CLUSTER_NEEDS = {"nodes": {"get", "list", "watch"}}


def load() -> list[dict]:
    docs = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                doc["_file"] = path.name
                docs.append(doc)
    return docs


DOCS = load()


def of_kind(kind: str) -> list[dict]:
    return [d for d in DOCS if d["kind"] == kind]


def one(kind: str, name: str) -> dict:
    found = [d for d in of_kind(kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def test_every_object_uses_an_api_that_1_20_and_current_releases_share():
    assert DOCS, "no manifests found"
    for doc in DOCS:
        assert doc["kind"] in ALLOWED.get(doc["apiVersion"], set()), f"{doc['_file']}: {doc['apiVersion']} {doc['kind']}"


def test_names_are_unique_and_namespaced_objects_name_an_existing_namespace():
    namespaces = {d["metadata"]["name"] for d in of_kind("Namespace")}
    seen = set()
    for doc in DOCS:
        key = (doc["kind"], doc["metadata"].get("namespace"), doc["metadata"]["name"])
        assert key not in seen, f"duplicate {key}"
        seen.add(key)
        if doc["kind"] not in {"Namespace", "ClusterRole", "ClusterRoleBinding"}:
            assert doc["metadata"].get("namespace") in namespaces, f"{doc['_file']}: {key}"


@pytest.mark.parametrize("deployment", of_kind("Deployment"), ids=lambda d: d["metadata"]["name"])
def test_deployments_select_their_pods_and_read_existing_config(deployment):
    spec = deployment["spec"]
    labels = spec["template"]["metadata"]["labels"]
    selector = spec["selector"]["matchLabels"]
    assert selector and all(labels.get(k) == v for k, v in selector.items()), (selector, labels)
    ns = deployment["metadata"]["namespace"]
    pod = spec["template"]["spec"]
    account = pod.get("serviceAccountName")
    assert account and one("ServiceAccount", account)["metadata"]["namespace"] == ns
    containers = pod["containers"] + pod.get("initContainers", [])
    volumes = {v["name"] for v in pod.get("volumes", [])}
    for volume in pod.get("volumes", []):
        if "persistentVolumeClaim" in volume:
            claim = one("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
            assert claim["metadata"]["namespace"] == ns
    for c in containers:
        assert c["args"][0] in {"serve", "worker", "migrate", "agent"}, c["args"]
        for source in c.get("envFrom", []):
            if "configMapRef" in source:
                assert one("ConfigMap", source["configMapRef"]["name"])["metadata"]["namespace"] == ns
            if "secretRef" in source:
                assert one("Secret", source["secretRef"]["name"])["metadata"]["namespace"] == ns
        for mount in c.get("volumeMounts", []):
            assert mount["name"] in volumes
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        for probe in ("readinessProbe", "livenessProbe"):
            if probe in c:
                port = c[probe]["httpGet"]["port"]
                assert port in ports or port in ports.values(), (c["name"], probe, port)
    # Every Deployment's selector is its own: no two select each other's Pods.
    for other in of_kind("Deployment"):
        if other is not deployment and other["metadata"]["namespace"] == ns:
            other_labels = other["spec"]["template"]["metadata"]["labels"]
            assert not all(other_labels.get(k) == v for k, v in selector.items())


def test_every_service_selects_a_deployment_and_targets_a_declared_port():
    assert of_kind("Service")
    for service in of_kind("Service"):
        ns = service["metadata"]["namespace"]
        selector = service["spec"]["selector"]
        matches = [d for d in of_kind("Deployment") if d["metadata"]["namespace"] == ns
                   and all(d["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in selector.items())]
        assert len(matches) == 1, f"Service {service['metadata']['name']} selects {len(matches)} Deployments"
        pod = matches[0]["spec"]["template"]["spec"]
        declared = {(p.get("name"), p["containerPort"]) for c in pod["containers"] for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            target = port["targetPort"]
            assert any(target in (name, number) for name, number in declared), (port, declared)


def test_ingress_serves_the_console_host_and_the_apps_wildcard_host_from_the_serve_service():
    config = one("ConfigMap", "remotegpu-config")["data"]
    public_host = config["REMOTEGPU_PUBLIC_URL"].split("://", 1)[1].split("/")[0]
    apps = config["REMOTEGPU_APPS_DOMAIN"]
    (ingress,) = of_kind("Ingress")
    ns = ingress["metadata"]["namespace"]
    hosts = {}
    for rule in ingress["spec"]["rules"]:
        (path,) = rule["http"]["paths"]
        assert path["path"] == "/" and path["pathType"] == "Prefix"
        hosts[rule["host"]] = path["backend"]["service"]
    assert set(hosts) == {public_host, f"*.{apps}"}
    tls_hosts = {h for t in ingress["spec"]["tls"] for h in t["hosts"]}
    assert tls_hosts == set(hosts)
    for backend in hosts.values():
        service = one("Service", backend["name"])
        assert service["metadata"]["namespace"] == ns
        names = {p["name"] for p in service["spec"]["ports"]} | {p["port"] for p in service["spec"]["ports"]}
        assert backend["port"].get("name", backend["port"].get("number")) in names


def _granted(rules: list[dict]) -> dict[str, set[str]]:
    granted: dict[str, set[str]] = {}
    for rule in rules:
        if "" not in rule["apiGroups"]:
            continue
        for resource in rule["resources"]:
            granted.setdefault(resource, set()).update(rule["verbs"])
    return granted


def _bound_roles(kind: str, binding_kind: str, account: str, account_ns: str, namespace: str | None) -> list[dict]:
    roles = []
    for binding in of_kind(binding_kind):
        if binding["metadata"].get("namespace") != namespace:
            continue
        if any(s["kind"] == "ServiceAccount" and s["name"] == account and s["namespace"] == account_ns
               for s in binding["subjects"]):
            assert binding["roleRef"]["kind"] == kind and binding["roleRef"]["apiGroup"] == "rbac.authorization.k8s.io"
            roles.append(one(kind, binding["roleRef"]["name"]))
    return roles


def test_the_agent_account_may_do_what_the_runtime_adapter_does_and_no_more():
    config = one("ConfigMap", "remotegpu-agent-config")["data"]
    assert config["REMOTEGPU_RUNTIME"] == "kubernetes"
    env_ns = config["REMOTEGPU_KUBE_NAMESPACE"]
    agent = one("Deployment", "remotegpu-agent")
    account = one("ServiceAccount", agent["spec"]["template"]["spec"]["serviceAccountName"])
    account_name, account_ns = account["metadata"]["name"], account["metadata"]["namespace"]
    assert env_ns != account_ns, "environments must not share the namespace holding the platform's secrets"
    assert env_ns in {d["metadata"]["name"] for d in of_kind("Namespace")}
    roles = _bound_roles("Role", "RoleBinding", account_name, account_ns, env_ns)
    assert roles, f"no Role bound to the agent's account in {env_ns}"
    granted: dict[str, set[str]] = {}
    for role in roles:
        assert role["metadata"]["namespace"] == env_ns
        for resource, verbs in _granted(role["rules"]).items():
            granted.setdefault(resource, set()).update(verbs)
    for resource, verbs in ADAPTER_NEEDS.items():
        assert verbs <= granted.get(resource, set()), f"{resource}: missing {verbs - granted.get(resource, set())}"
    assert "*" not in {v for verbs in granted.values() for v in verbs} and "*" not in granted
    cluster: dict[str, set[str]] = {}
    for role in _bound_roles("ClusterRole", "ClusterRoleBinding", account_name, account_ns, None):
        cluster.update(_granted(role["rules"]))
    for resource, verbs in CLUSTER_NEEDS.items():
        assert verbs <= cluster.get(resource, set())
    assert set(cluster) == set(CLUSTER_NEEDS), f"cluster-wide grants beyond reading nodes: {set(cluster)}"
    assert all(verbs <= {"get", "list", "watch"} for verbs in cluster.values())
    # Nothing in the platform's own namespace: the agent reads none of the platform's Secrets.
    assert not _bound_roles("Role", "RoleBinding", account_name, account_ns, account_ns)
    # One agent, never two at once with the same token.
    assert agent["spec"]["replicas"] == 1 and agent["spec"]["strategy"]["type"] == "Recreate"


def test_the_environments_network_policies_admit_the_servers_pods_and_the_agent_may_make_them():
    """The runtime's NetworkPolicy admits the servers by their Pods' and namespace's labels:
    the serve Deployment's Pods and its namespace carry them; the agent's Role in the
    environments' namespace may create, patch and delete NetworkPolicies."""
    from remotegpu.adapters.runtime.kubernetes_runtime import PLATFORM_NAMESPACES, PLATFORM_PODS

    serve = one("Deployment", "remotegpu-serve")
    labels = serve["spec"]["template"]["metadata"]["labels"]
    assert PLATFORM_PODS.items() <= labels.items()
    namespace = one("Namespace", serve["metadata"]["namespace"])
    assert PLATFORM_NAMESPACES.items() <= namespace["metadata"]["labels"].items()
    # The worker and the agent are not admitted (neither dials environments).
    for name in ("remotegpu-worker", "remotegpu-agent"):
        assert not PLATFORM_PODS.items() <= one("Deployment", name)["spec"]["template"]["metadata"]["labels"].items()
    env_ns = one("ConfigMap", "remotegpu-agent-config")["data"]["REMOTEGPU_KUBE_NAMESPACE"]
    (role,) = [r for r in of_kind("Role") if r["metadata"]["name"] == "remotegpu-runtime"]
    assert role["metadata"]["namespace"] == env_ns
    verbs = {v for rule in role["rules"] if "networking.k8s.io" in rule["apiGroups"] and "networkpolicies" in rule["resources"]
             for v in rule["verbs"]}
    assert {"get", "create", "patch", "delete"} <= verbs


def test_the_worker_holds_no_cluster_rights_the_servers_only_read_environment_pods_and_the_agent_reaches_the_servers():
    pod = one("Deployment", "remotegpu-worker")["spec"]["template"]["spec"]
    account = one("ServiceAccount", pod["serviceAccountName"])
    assert pod.get("automountServiceAccountToken") is False
    assert account.get("automountServiceAccountToken") is False
    for binding in of_kind("RoleBinding") + of_kind("ClusterRoleBinding"):
        assert all(s["name"] != account["metadata"]["name"] for s in binding["subjects"])
    # The servers' app proxy finds environments' Pods (JupyterLab) in the agent's
    # namespace by the agent's scope label, and may read Pods there, nothing more.
    agent = one("ConfigMap", "remotegpu-agent-config")["data"]
    servers = one("ConfigMap", "remotegpu-config")["data"]
    env_ns = agent["REMOTEGPU_KUBE_NAMESPACE"]
    assert servers["REMOTEGPU_KUBE_NAMESPACE"] == env_ns
    assert servers["REMOTEGPU_DOCKER_SCOPE"] == agent["REMOTEGPU_DOCKER_SCOPE"] != ""
    pod = one("Deployment", "remotegpu-serve")["spec"]["template"]["spec"]
    account = one("ServiceAccount", pod["serviceAccountName"])
    name, ns = account["metadata"]["name"], account["metadata"]["namespace"]
    assert name not in {pod_spec["spec"]["template"]["spec"]["serviceAccountName"]
                        for pod_spec in of_kind("Deployment") if pod_spec["metadata"]["name"] != "remotegpu-serve"}
    roles = _bound_roles("Role", "RoleBinding", name, ns, env_ns)
    granted: dict[str, set[str]] = {}
    for role in roles:
        for resource, verbs in _granted(role["rules"]).items():
            granted.setdefault(resource, set()).update(verbs)
    assert granted == {"pods": {"get", "list", "watch"}}
    assert not _bound_roles("ClusterRole", "ClusterRoleBinding", name, ns, None)
    assert not _bound_roles("Role", "RoleBinding", name, ns, ns)
    server = one("ConfigMap", "remotegpu-agent-config")["data"]["REMOTEGPU_SERVER_URL"]
    host, _, port = server.split("://", 1)[1].partition(":")
    name, namespace, suffix = host.split(".", 2)
    assert suffix.startswith("svc")
    service = one("Service", name)
    assert service["metadata"]["namespace"] == namespace
    assert int(port or 80) in {p["port"] for p in service["spec"]["ports"]}
    # Data mounts' init containers run the servers' image and reach the same Service.
    agent_config = one("ConfigMap", "remotegpu-agent-config")["data"]
    assert agent_config["REMOTEGPU_KUBE_PLATFORM_URL"] == server
    assert agent_config["REMOTEGPU_KUBE_MOUNT_IMAGE"] == \
        one("Deployment", "remotegpu-serve")["spec"]["template"]["spec"]["containers"][0]["image"]
