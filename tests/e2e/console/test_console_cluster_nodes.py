"""The admin's hosts page lists a Kubernetes host's cluster nodes (zh-CN and English).

A host joins through the agent API with the report a Kubernetes agent sends
(``cluster_nodes``: tests/integration/test_kubernetes_platform.py shows a real agent on a real
API server producing it); the page shows each node's state, GPU counts, CPU/memory and
GPU labels."""

from __future__ import annotations

from playwright.sync_api import expect

from remotegpu.adapters.fleet.wire import report_to_dict
from remotegpu.application.fleet.agent_protocol import HostReport
from remotegpu.domain.fleet.models import ClusterNode, parse_fake_gpus

PRODUCT = "NVIDIA-H100-80GB-HBM3"


def test_the_hosts_page_lists_the_clusters_nodes_in_both_languages(make_page, ui):
    admin = ui.admin_token()
    name = ui.unique("k8s-")
    report = report_to_dict(HostReport(
        gpus=parse_fake_gpus("4xNVIDIA H100 80GB", seed=name), cpu_cores=8, memory_gib=32, disk_gib=100,
        runtime="kubernetes", runtime_healthy=True, fake_gpus=True, address="203.0.113.30",
        cluster_nodes=[
            ClusterNode("gpu-node-a", True, True, 8, 8, 3, "64", "512Gi",
                        {"nvidia.com/gpu.product": PRODUCT, "topology.kubernetes.io/zone": "zone-1"}),
            ClusterNode("gpu-node-b", False, False, 8, 0, 0, "64", "512Gi", {"nvidia.com/gpu.product": PRODUCT}),
        ]))
    code, host = ui.server.request("POST", "/api/v1/hosts", {"name": name}, token=admin)
    assert code == 201, host
    code, joined = ui.server.request("POST", "/api/v1/agent/register",
                                     {"join_token": host["join_token"], "name": name, "report": report})
    assert code == 201, joined
    try:
        for locale, texts in (
            ("en-US", {"title": "Cluster nodes (2)", "ready": "Ready", "not_ready": "Not ready", "cordoned": "Cordoned",
                       "gpus": "3 allocated / 8 allocatable / 8 total"}),
            ("zh-CN", {"title": "集群节点（2）", "ready": "就绪", "not_ready": "未就绪", "cordoned": "已封锁",
                       "gpus": "已分配 3 / 可分配 8 / 共 8"}),
        ):
            page = make_page(locale)
            ui.login(page, "admin", "admin-password-123")
            page.goto("/admin/hosts")
            row = page.locator("tr.el-table__row", has=page.get_by_test_id(f"host-status-{name}"))
            row.locator(".el-table__expand-icon").click()
            nodes = page.get_by_test_id(f"host-nodes-{name}")
            expect(nodes).to_contain_text(texts["title"])
            expect(nodes.get_by_test_id("node-gpu-node-a")).to_have_text("gpu-node-a")
            expect(nodes.get_by_test_id("node-state-gpu-node-a")).to_have_text(texts["ready"])
            expect(nodes.get_by_test_id("node-gpus-gpu-node-a")).to_have_text(texts["gpus"])
            expect(nodes.get_by_test_id("node-label-gpu-node-a").first).to_have_text(f"nvidia.com/gpu.product={PRODUCT}")
            expect(nodes.get_by_test_id("node-label-gpu-node-a").nth(1)).to_have_text("topology.kubernetes.io/zone=zone-1")
            state_b = nodes.get_by_test_id("node-state-gpu-node-b")
            expect(state_b).to_contain_text(texts["not_ready"])
            expect(state_b).to_contain_text(texts["cordoned"])
            ui.shot(page, f"admin-hosts-cluster-nodes-{locale}")
    finally:
        code, _ = ui.server.request("DELETE", f"/api/v1/hosts/{host['id']}?force=true", token=admin)
        assert code == 204
