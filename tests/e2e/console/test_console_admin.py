"""Admin pages: hidden from and closed to non-admins; an admin sees users, audit, quotas, hosts."""

from __future__ import annotations

from playwright.sync_api import expect


def test_non_admin_cannot_reach_admin_pages(page, ui):
    name = ui.user("pleb")
    ui.login(page, name)
    expect(page.get_by_test_id("nav-workspaces")).to_be_visible()
    expect(page.get_by_test_id("nav-admin")).to_have_count(0)
    for path in ("/admin/users", "/admin/hosts", "/admin/audit", "/admin/quotas", "/admin"):
        page.goto(path)
        page.wait_for_url("**/environments")
    expect(page.locator(".el-message--warning")).to_contain_text("platform admins")
    expect(page.get_by_test_id("users-table")).to_have_count(0)


def test_admin_sees_users_and_admin_pages(page, ui):
    other = ui.user("member")
    ui.login(page, "admin", "admin-password-123")
    expect(page.get_by_test_id("nav-admin")).to_be_visible()
    page.get_by_test_id("nav-admin").click()
    page.get_by_test_id("nav-admin-users").click()
    page.wait_for_url("**/admin/users")
    table = page.get_by_test_id("users-table")
    expect(table).to_contain_text("admin")
    expect(table).to_contain_text(other)
    ui.shot(page, "admin-users")

    page.get_by_test_id("users-search").fill(other)
    page.get_by_test_id("users-search").press("Enter")
    expect(table.locator(".el-table__row")).to_have_count(1)
    table.get_by_role("button", name="Disable").click()
    ui.confirm(page)
    expect(table).to_contain_text("Disabled")
    table.get_by_role("button", name="Enable").click()
    expect(table).to_contain_text("Active")

    page.goto("/admin/audit")
    expect(page.get_by_test_id("audit-table")).to_contain_text("login")
    ui.shot(page, "admin-audit")

    # Quotas: the admin finds another user's workspace (GET /api/v1/workspaces?all=true) and limits it.
    page.goto("/admin/quotas")
    workspaces = page.get_by_test_id("quota-workspaces")
    expect(workspaces).to_contain_text("admin's workspace")
    page.get_by_test_id("quota-search").fill(f"{other}-personal")  # the slug: unique, unlike a name prefix
    page.get_by_test_id("quota-search").press("Enter")
    expect(workspaces.locator(".el-table__row")).to_have_count(1)
    expect(workspaces).to_contain_text(f"{other}'s workspace")
    expect(workspaces).to_contain_text("Not a member")
    page.get_by_test_id(f"quota-edit-{other}-personal").click()
    expect(page.get_by_test_id("quota-selected")).to_contain_text(f"{other}'s workspace")
    page.get_by_test_id("quota-max_gpus").locator("input").fill("4")
    page.get_by_test_id("quota-save").click()
    expect(page.locator(".el-message--success")).to_be_visible()
    expect(page.get_by_test_id("usage-gpus")).to_contain_text("/ 4")
    ui.shot(page, "admin-quotas")

    page.goto("/admin/hosts")
    expect(page.locator("[data-testid=hosts-table], [data-testid=not-available]").first).to_be_visible()
    ui.shot(page, "admin-hosts")


def test_workspaces_page_shows_members_and_quota(page, ui):
    owner = ui.user("owner")
    friend = ui.user("friend")
    ui.login(page, owner)
    page.get_by_test_id("nav-workspaces").click()
    page.get_by_test_id("ws-new-name").fill("Vision team")
    page.get_by_test_id("ws-create").click()
    expect(page.get_by_test_id("ws-selected-name")).to_contain_text("Vision team")
    members = page.get_by_test_id("ws-members")
    expect(members).to_contain_text(owner)
    # Adding someone is an invitation: pending until they accept (test_console_workspaces.py).
    page.get_by_test_id("ws-invite-who").fill(friend)
    page.get_by_test_id("ws-invite-send").click()
    expect(page.get_by_test_id("ws-invitations")).to_contain_text(friend)
    expect(members).not_to_contain_text(friend)
    expect(page.get_by_test_id("usage-gpus")).to_be_visible()
    ui.shot(page, "workspaces")


def test_admin_sees_a_gpu_conflict_rotates_a_token_and_removes_a_host(page, ui):
    """Two hosts joined through the agent API, the second reporting the first's GPU UUID:
    the hosts page flags the second; Rotate shows a new join command and cuts the first's
    agent off; Remove takes the second away."""
    from remotegpu.adapters.fleet.wire import report_to_dict
    from remotegpu.application.fleet.agent_protocol import HostReport
    from remotegpu.domain.fleet.models import parse_fake_gpus

    admin = ui.admin_token()
    owner, thief = ui.unique("trust-a"), ui.unique("trust-b")
    gpus = parse_fake_gpus("1xNVIDIA L4 24GB", seed=owner)
    report = report_to_dict(HostReport(gpus=gpus, cpu_cores=8, memory_gib=32, disk_gib=100, runtime="memory",
                                       runtime_healthy=True, fake_gpus=True, address="203.0.113.20"))
    tokens, ids = {}, {}
    for name in (owner, thief):
        code, host = ui.server.request("POST", "/api/v1/hosts", {"name": name}, token=admin)
        assert code == 201, host
        code, joined = ui.server.request("POST", "/api/v1/agent/register",
                                         {"join_token": host["join_token"], "name": name, "report": report})
        assert code == 201, joined
        tokens[name], ids[name] = joined["agent_token"], host["id"]

    ui.login(page, "admin", "admin-password-123")
    page.goto("/admin/hosts")
    expect(page.get_by_test_id(f"host-status-{thief}").get_by_test_id("host-conflict")).to_contain_text("GPU conflict")
    expect(page.get_by_test_id(f"host-status-{owner}").get_by_test_id("host-conflict")).to_have_count(0)
    ui.shot(page, "admin-hosts-conflict")

    page.get_by_test_id(f"host-rotate-{owner}").click()
    ui.confirm(page)
    command = page.get_by_test_id("host-rotated-command")
    expect(command).to_contain_text("remotegpu agent --server")
    expect(command).to_contain_text("--token rgj_")
    ui.shot(page, "admin-hosts-rotated")
    page.get_by_role("button", name="Done").last.click()
    code, body = ui.server.request("POST", "/api/v1/agent/heartbeat", report, token=tokens[owner])
    assert code == 401, body  # the old agent token died at once

    page.get_by_test_id(f"host-remove-{thief}").click()
    ui.confirm(page)
    expect(page.get_by_test_id(f"host-status-{thief}")).to_have_count(0)
    assert ui.server.request("GET", f"/api/v1/hosts/{ids[thief]}", token=admin)[0] == 404
    code, _ = ui.server.request("DELETE", f"/api/v1/hosts/{ids[owner]}", token=admin)  # leave the shared server as found
    assert code == 204
