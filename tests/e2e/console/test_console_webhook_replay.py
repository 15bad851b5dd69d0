"""Webhook replay in the browser: a ticket about the workspace sends ticket.created to a
local receiver; replaying the last day from the delivery log sends it again with the same
webhook-id (and nothing while "only never delivered" is on)."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.e2e.console.conftest import PASSWORD, login_ui, shot, unique
from tests.e2e.console.test_console_webhooks import _wait_for, receiver, wh_page, wh_server  # noqa: F401 - fixtures


def test_replay_a_time_range_from_the_delivery_log(wh_page, wh_server, receiver):
    name = unique("replay")
    wh_server.signup(name, PASSWORD)
    token = wh_server.login(name, PASSWORD)
    _, workspaces = wh_server.request("GET", "/api/v1/workspaces", token=token)
    personal = next(w["id"] for w in workspaces["items"] if w["is_personal"])
    status, _ = wh_server.request("POST", "/api/v1/webhooks", {"workspace_id": personal, "url": receiver.url,
                                                                "event_types": ["ticket.created"]}, token=token)
    assert status == 201
    status, _ = wh_server.request("POST", "/api/v1/tickets", {"subject": "help", "description": "d", "workspace_id": personal},
                                  token=token)
    assert status == 201
    _wait_for(lambda: len(receiver.received) == 1)
    first_id = receiver.received[0][0]["webhook-id"]

    page = wh_page()
    login_ui(page, name)
    page.get_by_test_id("nav-webhooks").click()
    page.get_by_test_id("wh-log").click()
    expect(page.get_by_test_id("wh-delivery-status").first).to_have_text("Delivered")
    page.get_by_test_id("wh-replay").click()
    dialog = page.get_by_test_id("wh-replay-dialog")
    expect(dialog).to_be_visible()
    page.get_by_test_id("wh-replay-submit").click()  # last 24 h, only never delivered: nothing
    expect(page.locator(".el-message--success").last).to_contain_text("0 queued, 1 skipped")
    page.get_by_test_id("wh-replay").click()
    page.get_by_test_id("wh-replay-only-failed").click()
    shot(page, "webhooks-replay")
    page.get_by_test_id("wh-replay-submit").click()
    expect(page.locator(".el-message--success").last).to_contain_text("1 queued")
    _wait_for(lambda: len(receiver.received) == 2)
    assert receiver.received[1][0]["webhook-id"] == first_id and receiver.received[1][1] == receiver.received[0][1]
