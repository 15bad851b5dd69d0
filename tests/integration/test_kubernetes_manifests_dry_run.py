"""deploy/kubernetes/ accepted by a real kube-apiserver (1.20.2, tests/support/kube_cluster.py)
with server-side dry-run (``?dryRun=All``): every object goes through the server's decoding
(unknown fields of a typed object are dropped, so the answer is compared with what was sent),
defaulting, validation and admission, RBAC's escalation check included, and nothing is stored.

Namespaced objects need their namespace to exist (admission refuses them otherwise), so the
test creates the two namespaces for real under names of its own, puts the objects there, and
deletes them afterwards. The Namespaces themselves and the cluster-scoped objects are
dry-run under their own names.
"""

from __future__ import annotations

import copy
import uuid

from kubernetes import utils
from kubernetes.client.exceptions import ApiException

from tests.unit.deploy.test_kubernetes_manifests import DOCS


def _submitted(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k != "_file"}


def _subset(sent, answered, path: str = "") -> list[str]:
    """Where ``answered`` lacks or changed something of ``sent`` (the server dropped an
    unknown field, or changed a value): the paths."""
    if isinstance(sent, dict):
        if not isinstance(answered, dict):
            return [path]
        return [p for k, v in sent.items() for p in _subset(v, answered.get(k, _MISSING), f"{path}.{k}")]
    if isinstance(sent, list):
        if not isinstance(answered, list) or len(answered) != len(sent):
            return [path]
        return [p for i, (a, b) in enumerate(zip(sent, answered)) for p in _subset(a, b, f"{path}[{i}]")]
    if answered is _MISSING:
        return [path]
    if sent != answered and str(sent) != str(answered):  # "1" vs 1 (resource quantities)
        return [path]
    return []


_MISSING = object()


def test_every_manifest_is_accepted_by_server_side_dry_run(kube_cluster) -> None:
    from kubernetes import client

    api = kube_cluster.api_client()
    core = client.CoreV1Api(api)
    suffix = uuid.uuid4().hex[:6]
    namespaces = {d["metadata"]["name"]: f'{d["metadata"]["name"]}-dry-{suffix}' for d in DOCS if d["kind"] == "Namespace"}
    assert set(namespaces) == {"remotegpu", "remotegpu-environments"}
    for real in namespaces.values():
        kube_cluster.create_namespace(real)
    kinds: set[str] = set()
    try:
        for doc in DOCS:
            body = copy.deepcopy(_submitted(doc))
            if "namespace" in body["metadata"]:
                body["metadata"]["namespace"] = namespaces[body["metadata"]["namespace"]]
            for subject in body.get("subjects", []):
                if "namespace" in subject:
                    subject["namespace"] = namespaces[subject["namespace"]]
            where = f'{doc["_file"]}: {doc["kind"]}/{doc["metadata"]["name"]}'
            try:
                (answered,) = utils.create_from_dict(api, body, dry_run="All")
            except utils.FailToCreateError as exc:
                reasons = "; ".join(f"{e.status} {e.body}" for e in exc.api_exceptions)
                raise AssertionError(f"{where} refused by the API server: {reasons}") from None
            answered = api.sanitize_for_serialization(answered)
            dropped = [p for p in _subset(body, answered) if not p.startswith(".stringData")]  # write-only
            assert not dropped, f"{where}: the server dropped or changed {dropped}"
            kinds.add(doc["kind"])
        # The control: dry-run does validate (a Deployment the server must refuse is refused).
        bad = copy.deepcopy(_submitted(next(d for d in DOCS if d["kind"] == "Deployment")))
        bad["metadata"]["namespace"] = namespaces[bad["metadata"]["namespace"]]
        bad["spec"]["replicas"] = -1
        try:
            utils.create_from_dict(api, bad, dry_run="All")
            raise AssertionError("a Deployment with -1 replicas was accepted")
        except utils.FailToCreateError as exc:
            assert [e.status for e in exc.api_exceptions] == [422]
        # Nothing was stored: dry-run only.
        assert not core.list_namespaced_config_map(namespaces["remotegpu"], label_selector="app.kubernetes.io/part-of=remotegpu").items
        assert not client.AppsV1Api(api).list_namespaced_deployment(namespaces["remotegpu"]).items
        try:
            client.CoreV1Api(api).read_namespace("remotegpu")
            raise AssertionError("the dry-run stored a Namespace")
        except ApiException as exc:
            assert exc.status == 404
    finally:
        for real in namespaces.values():
            core.delete_namespace(real)
    assert {"Namespace", "ConfigMap", "Secret", "ServiceAccount", "Role", "RoleBinding", "ClusterRole",
            "ClusterRoleBinding", "Deployment", "Service", "Ingress", "PersistentVolumeClaim"} <= kinds
