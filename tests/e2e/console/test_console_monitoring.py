"""Monitoring in the browser: an environment's charts fed by the embedded agent's fake
GPUs (driven to 95 % through the control file), an alert rule created in the editor
that fires and shows in the alert list, the Chinese page, and the admins' fleet view."""

from __future__ import annotations

import json
import re
import time
from typing import Iterator

import pytest
from playwright.sync_api import expect

from tests.e2e.console.conftest import PASSWORD, login_ui, shot, unique
from tests.support.live_server import LiveServer, live_server


@pytest.fixture(scope="module")
def mon_server(console_built, tmp_path_factory) -> Iterator[tuple[LiveServer, object]]:
    folder = tmp_path_factory.mktemp("console-monitoring")
    control = folder / "fake-gpus.json"
    control.write_text(json.dumps({"*": {"DCGM_FI_DEV_GPU_UTIL": 95}}))
    with live_server(folder / "data", REMOTEGPU_METRICS_INTERVAL_SECONDS="1", REMOTEGPU_HEARTBEAT_SECONDS="1",
                     REMOTEGPU_ALERT_EVAL_SECONDS="1", REMOTEGPU_AGENT_FAKE_GPU_CONTROL=str(control),
                     REMOTEGPU_AGENT_FAKE_GPUS="2xNVIDIA A100-SXM4-80GB") as srv:
        yield srv, control


def _running_env(server: LiveServer, token: str) -> str:
    _, wss = server.request("GET", "/api/v1/workspaces", token=token)
    ws = next(w for w in wss["items"] if w["is_personal"])["id"]
    status, env = server.request("POST", "/api/v1/environments", {"name": "charts", "workspace_id": ws, "gpu_count": 1,
                                                                   "cpu_cores": 1, "memory_gib": 1}, token=token)
    assert status == 202, env
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        _, env = server.request("GET", f"/api/v1/environments/{env['id']}", token=token)
        if env["status"] == "running":
            return env["id"]
        time.sleep(0.3)
    raise AssertionError(f"environment not running: {env}")


def test_charts_alert_editor_alert_list_and_fleet(mon_server, browser):
    server, _control = mon_server
    name = unique("mon")
    token = server.signup(name, PASSWORD)
    env_id = _running_env(server, token)
    context = browser.new_context(base_url=server.url, locale="en-US", viewport={"width": 1440, "height": 900})
    context.set_default_timeout(20_000)
    errors: list[str] = []
    try:
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        login_ui(page, name)

        page.goto(f"/environments/{env_id}")
        page.get_by_role("tab", name="Metrics").click()
        metrics = page.get_by_test_id("env-metrics")
        expect(metrics.get_by_test_id("metric-chart").first).to_be_visible()
        # the first chart (GPU utilization) draws a line once samples arrived (1 s collection, 1 s beats)
        expect(metrics.get_by_test_id("metric-chart").first.locator("path").first).to_be_attached(timeout=30_000)
        expect(metrics.get_by_test_id("metric-chart").first).to_contain_text("95")
        shot(page, "monitoring-env-charts")

        # the host page is the admins': a member is sent away from it
        page.goto("/admin/hosts/whatever/metrics")
        expect(page).not_to_have_url(re.compile(r"/admin/hosts/"))
        expect(page.get_by_test_id("host-metrics")).to_have_count(0)

        page.goto("/alerts")
        page.get_by_test_id("rule-new").click()
        page.get_by_test_id("rule-name").fill("busy GPU")
        page.get_by_test_id("rule-save").click()
        expect(page.get_by_test_id("rules-table")).to_contain_text("busy GPU")
        # for = 60 s by default: it shows as pending first; the server evaluates every second
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            page.reload()
            if "Pending" in page.get_by_test_id("alerts-table").inner_text():
                break
            time.sleep(1)
        expect(page.get_by_test_id("alerts-table")).to_contain_text("Pending")
        page.get_by_test_id("rule-silence").first.click()
        expect(page.get_by_test_id("silences-table")).to_contain_text("busy GPU")
        shot(page, "monitoring-alerts")

        zh = context.new_page()
        zh.goto("/alerts")
        zh.evaluate("localStorage.setItem('rgpu.locale', 'zh-CN')")
        zh.reload()
        expect(zh.get_by_test_id("alerts-view")).to_contain_text("告警规则", timeout=10_000)
        shot(zh, "monitoring-alerts-zh")

        admin = browser.new_context(base_url=server.url, locale="en-US", viewport={"width": 1440, "height": 900})
        try:
            ap = admin.new_page()
            login_ui(ap, "admin", "admin-password-123")
            ap.goto("/admin/fleet")
            expect(ap.get_by_test_id("fleet-cell").first).to_be_visible()
            expect(ap.get_by_test_id("fleet-cell")).to_have_count(2)
            shot(ap, "monitoring-fleet")
            # a host's charts (admins): per GPU util/memory/temperature/power, per environment CPU and memory
            ap.get_by_test_id("fleet-host").first.click()
            host = ap.get_by_test_id("host-metrics")
            expect(host).to_contain_text("Host metrics")
            expect(host.get_by_test_id("metric-chart")).to_have_count(6)
            expect(host.get_by_test_id("metric-chart").first.locator("path").first).to_be_attached(timeout=30_000)
            expect(host.get_by_test_id("metric-chart").first).to_contain_text("95")
            expect(host.get_by_test_id("metric-chart").nth(2)).to_contain_text("GPU temperature")
            shot(ap, "monitoring-host")
            ap.evaluate("localStorage.setItem('rgpu.locale', 'zh-CN')")
            ap.reload()
            expect(ap.get_by_test_id("host-metrics")).to_contain_text("主机监控", timeout=10_000)
            expect(ap.get_by_test_id("host-metrics")).to_contain_text("GPU 温度")
        finally:
            admin.close()
    finally:
        context.close()
    assert not errors, errors
