"""Support tickets in the browser: a user opens one, the support team (a platform admin)
finds it in the queue, adds an internal note and a public reply that sets it pending; the
user sees the reply (never the note), in English and in Chinese, and marks it solved."""

from __future__ import annotations

from playwright.sync_api import expect


def _pick(page, select_testid: str, option: str) -> None:
    page.get_by_test_id(select_testid).click()
    page.locator(".el-select-dropdown__item:visible", has_text=option).first.click()


def test_ticket_from_user_to_support_queue_and_back(make_page, ui):
    alice = ui.user("alice")
    subject = ui.unique("GPU missing ")
    token = ui.server.login(alice, ui.password)
    _, workspaces = ui.server.request("GET", "/api/v1/workspaces", token=token)
    personal = next(w["id"] for w in workspaces["items"] if w["is_personal"])
    status, env = ui.server.request("POST", "/api/v1/environments", {
        "name": "trainer", "workspace_id": personal, "gpu_count": 0, "cpu_cores": 1, "memory_gib": 1}, token=token)
    assert status == 202, env
    user_page = make_page()
    ui.login(user_page, alice)
    user_page.get_by_test_id("nav-tickets").click()
    user_page.wait_for_url("**/tickets")
    expect(user_page.get_by_test_id("nav-support-queue")).to_have_count(0)  # not on the support team
    user_page.get_by_test_id("ticket-new").click()
    user_page.get_by_test_id("ticket-form-subject").fill(subject)
    _pick(user_page, "ticket-form-priority", "High")
    _pick(user_page, "ticket-form-environment", "trainer")
    user_page.get_by_test_id("ticket-form-description").fill("nvidia-smi shows no device")
    user_page.get_by_test_id("ticket-form-submit").click()
    user_page.wait_for_url("**/tickets/*")
    expect(user_page.get_by_test_id("ticket-title")).to_have_text(subject)
    expect(user_page.get_by_test_id("ticket-status")).to_have_text("New")
    expect(user_page.get_by_test_id("sla-first_response")).to_have_text("Running")
    expect(user_page.get_by_test_id("ticket-staff")).to_have_count(0)
    expect(user_page.get_by_test_id("ticket-environment")).to_have_attribute("href", f"/environments/{env['id']}")
    ticket_url = user_page.url
    # A screenshot attached to the ticket (through the object store), downloadable again.
    user_page.get_by_test_id("ticket-attach-input").set_input_files(
        {"name": "nvidia-smi.txt", "mimeType": "text/plain", "buffer": b"No devices were found\n"})
    expect(user_page.get_by_test_id("ticket-attachment")).to_contain_text("nvidia-smi.txt")
    with user_page.expect_download() as download:
        user_page.get_by_test_id("ticket-attachment").first.click()
    assert open(download.value.path(), "rb").read() == b"No devices were found\n"
    status, got = ui.server.request("GET", "/api/v1/tickets/" + ticket_url.rsplit("/", 1)[1], token=token)
    assert status == 200 and got["environment_id"] == env["id"] and got["workspace_id"] == personal

    staff = make_page()
    ui.login(staff, "admin", "admin-password-123")
    staff.get_by_test_id("nav-support-queue").click()
    staff.wait_for_url("**/support/queue")
    staff.get_by_test_id("queue-subject").filter(has_text=subject).click()
    staff.wait_for_url("**/tickets/*")
    staff.get_by_test_id("ticket-assign-me").click()
    expect(staff.get_by_test_id("ticket-assignee")).to_have_text("admin")
    expect(staff.get_by_test_id("ticket-attachment")).to_contain_text("nvidia-smi.txt")
    staff.get_by_test_id("ticket-reply").fill("host gpu-3 has a driver mismatch")
    staff.get_by_test_id("ticket-internal").click()
    staff.get_by_test_id("ticket-reply-files").set_input_files(
        {"name": "dmesg.log", "mimeType": "text/plain", "buffer": b"NVRM: Xid 79"})
    expect(staff.get_by_test_id("ticket-reply-file")).to_contain_text("dmesg.log")
    staff.get_by_test_id("ticket-send").click()
    expect(staff.get_by_test_id("ticket-note-tag")).to_have_count(1)
    expect(staff.get_by_test_id("ticket-attachment")).to_have_count(2)  # the user's, and the note's
    staff.get_by_test_id("ticket-reply").fill("Please restart the environment and tell us.")
    _pick(staff, "ticket-reply-status", "Pending (waiting on requester)")
    staff.get_by_test_id("ticket-send").click()
    expect(staff.get_by_test_id("ticket-comment")).to_have_count(2)
    expect(staff.get_by_test_id("ticket-status")).to_have_text("Pending (waiting on requester)")
    expect(staff.get_by_test_id("sla-first_response")).to_have_text("Met")
    ui.shot(staff, "tickets-staff-detail")

    user_page.goto(ticket_url)
    expect(user_page.get_by_test_id("ticket-comment")).to_have_count(1)
    expect(user_page.get_by_test_id("ticket-comment-body")).to_have_text("Please restart the environment and tell us.")
    expect(user_page.get_by_text("driver mismatch")).to_have_count(0)
    expect(user_page.get_by_test_id("ticket-attachment")).to_have_count(1)  # the note's file is internal
    expect(user_page.get_by_test_id("ticket-status")).to_have_text("Waiting on you")
    expect(user_page.get_by_test_id("sla-resolution")).to_contain_text("Paused")
    ui.shot(user_page, "tickets-user-detail")

    zh = make_page("zh-CN")
    ui.login(zh, alice)
    zh.goto(ticket_url)
    expect(zh.get_by_test_id("ticket-status")).to_have_text("等待您回复")
    expect(zh.get_by_test_id("ticket-solve")).to_have_text("标记为已解决")
    ui.shot(zh, "tickets-user-detail-zh")

    user_page.get_by_test_id("ticket-solve").click()
    expect(user_page.get_by_test_id("ticket-status")).to_have_text("Solved")
    expect(user_page.get_by_test_id("ticket-reopen")).to_be_visible()
    user_page.get_by_test_id("nav-tickets").click()
    expect(user_page.get_by_test_id("ticket-subject").filter(has_text=subject)).to_have_count(1)


def test_a_platform_admin_puts_a_user_on_the_support_team(make_page, ui):
    bob = ui.user("bob")
    admin = make_page()
    ui.login(admin, "admin", "admin-password-123")
    admin.goto("/support/queue")
    admin.get_by_test_id("support-agent-username").fill(bob)
    admin.get_by_test_id("support-agent-add").click()
    expect(admin.get_by_test_id("support-agent").filter(has_text=bob)).to_have_count(1)
    page = make_page()
    ui.login(page, bob)
    page.get_by_test_id("nav-support-queue").click()
    page.wait_for_url("**/support/queue")
    expect(page.get_by_test_id("queue-table")).to_be_visible()
    expect(page.get_by_test_id("support-team")).to_have_count(0)  # managing the team is for platform admins
    admin.get_by_test_id("support-agent").filter(has_text=bob).locator(".el-tag__close").click()
    expect(admin.get_by_test_id("support-agent").filter(has_text=bob)).to_have_count(0)
    token = ui.server.login(bob, ui.password)
    status, _ = ui.server.request("GET", "/api/v1/support/queue", token=token)
    assert status == 403
