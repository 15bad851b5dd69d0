"""Notifications in the browser: a new one lights the bell live, the inbox shows it, marking it read clears the bell."""

from __future__ import annotations

from playwright.sync_api import expect


def test_a_notification_appears_live_and_is_marked_read(page, ui):
    alice = ui.user("alice")
    ui.login(page, alice)
    badge = page.get_by_test_id("notification-unread").locator(".el-badge__content")
    expect(badge).to_be_hidden()

    # A security event happens elsewhere (an API token created from a script): pushed to the open page.
    token = ui.server.login(alice, ui.password)
    status, _ = ui.server.request("POST", "/api/v1/users/me/tokens", {"name": "laptop"}, token=token)
    assert status == 201
    expect(badge).to_have_text("1", timeout=30_000)

    page.get_by_test_id("notification-bell").click()
    page.wait_for_url("**/notifications")
    item = page.locator("[data-testid^='notification-']").filter(has_text="laptop")
    expect(item).to_have_attribute("data-read", "false")
    expect(item).to_contain_text("New API token laptop")
    ui.shot(page, "notifications-inbox")
    item.get_by_test_id("mark-read").click()
    expect(item).to_have_attribute("data-read", "true")
    expect(badge).to_be_hidden()
    page.reload()
    expect(page.locator("[data-testid^='notification-']").filter(has_text="laptop")).to_have_attribute("data-read", "true")
    expect(badge).to_be_hidden()


def test_preferences_are_saved_and_security_cannot_be_switched_off(page, ui):
    alice = ui.user("alice")
    ui.login(page, alice)
    page.goto("/notifications?tab=preferences")
    form = page.get_by_test_id("notification-preferences")
    expect(form).to_be_visible()
    expect(page.get_by_test_id("pref-security-in_app").locator("input")).to_be_disabled()
    page.get_by_test_id("pref-environment-in_app").click()
    form.get_by_text("中文").click()
    page.get_by_test_id("save-preferences").click()
    expect(page.locator(".el-message--success")).to_be_visible()
    ui.shot(page, "notifications-preferences")
    page.reload()
    expect(page.get_by_test_id("pref-environment-in_app").locator("input")).not_to_be_checked()
    expect(page.get_by_test_id("pref-billing-in_app").locator("input")).to_be_checked()
    token = ui.server.login(alice, ui.password)
    status, prefs = ui.server.request("GET", "/api/v1/users/me/notification-preferences", token=token)
    assert status == 200 and prefs["locale"] == "zh-CN" and prefs["categories"]["environment"]["in_app"] is False
