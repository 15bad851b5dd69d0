"""Capacity in the browser: the create form says what can start now for the request
being composed and refuses what no host could hold; an admin raises a host's CPU
overcommit on the hosts page and the same request fits."""

from __future__ import annotations

from playwright.sync_api import expect


def test_create_form_capacity_and_host_overcommit(page, ui):
    from remotegpu.adapters.fleet.wire import report_to_dict
    from remotegpu.application.fleet.agent_protocol import HostReport
    from remotegpu.domain.fleet.models import parse_fake_gpus

    admin = ui.admin_token()
    name = ui.unique("small")
    model = f"Test GPU {name}"  # a model only this host has
    report = report_to_dict(HostReport(gpus=parse_fake_gpus(f"2x{model}", seed=name), cpu_cores=2, memory_gib=8,
                                       disk_gib=100, runtime="memory", runtime_healthy=True, fake_gpus=True,
                                       address="203.0.113.30"))
    code, host = ui.server.request("POST", "/api/v1/hosts", {"name": name}, token=admin)
    assert code == 201, host
    code, joined = ui.server.request("POST", "/api/v1/agent/register", {"join_token": host["join_token"], "name": name, "report": report})
    assert code == 201, joined
    try:
        user = ui.user("cap")
        ui.login(page, user)
        page.get_by_test_id("nav-create").click()
        page.wait_for_url("**/environments/new")
        page.get_by_test_id(f"gpu-card-{model}").click()
        page.get_by_test_id("create-memory").locator("input").fill("8")
        page.get_by_test_id("create-cpu").locator("input").fill("4")
        page.get_by_test_id("create-cpu").locator("input").press("Tab")
        expect(page.get_by_test_id(f"gpu-verdict-{model}")).to_have_text("No host can hold this", timeout=15_000)
        expect(page.get_by_test_id("create-never-fits")).to_contain_text("the largest such host offers 2 vCPU")
        expect(page.get_by_test_id("create-submit")).to_be_disabled()
        ui.shot(page, "create-never-fits")
        page.get_by_test_id("create-cpu").locator("input").fill("2")
        page.get_by_test_id("create-cpu").locator("input").press("Tab")
        expect(page.get_by_test_id(f"gpu-verdict-{model}")).to_have_text("Starts now", timeout=15_000)
        expect(page.get_by_test_id("create-submit")).to_be_enabled()

        page.get_by_test_id("user-menu").click()
        page.get_by_test_id("logout").click()
        page.wait_for_url("**/login**")
        ui.login(page, "admin", "admin-password-123")
        page.goto("/admin/hosts")
        expect(page.get_by_test_id(f"host-overcommit-{name}")).to_contain_text("schedules 2 vCPU / 8 GiB")
        page.get_by_test_id(f"host-overcommit-edit-{name}").click()
        page.get_by_test_id("host-cpu-overcommit").locator("input").fill("2")
        page.get_by_test_id("host-cpu-overcommit").locator("input").press("Tab")
        page.get_by_test_id("host-overcommit-save").click()
        expect(page.get_by_test_id(f"host-overcommit-{name}")).to_contain_text("overcommit CPU ×2.0, RAM ×1.0")
        expect(page.get_by_test_id(f"host-overcommit-{name}")).to_contain_text("schedules 4 vCPU / 8 GiB")
        ui.shot(page, "admin-hosts-overcommit")
        code, types = ui.server.request("GET", "/api/v1/gpu-types?gpu_count=1&cpu_cores=4&memory_gib=8", token=admin)
        assert code == 200 and next(t for t in types["items"] if t["model"] == model)["startable_now"] is True
    finally:
        code, _ = ui.server.request("DELETE", f"/api/v1/hosts/{host['id']}?force=true", token=admin)  # leave the shared server as found
        assert code == 204
