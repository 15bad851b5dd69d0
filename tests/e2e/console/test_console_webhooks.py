"""Webhooks in the browser: add an endpoint (the secret shown once), send a test that a
local receiver verifies with the standardwebhooks package, see the delivery log, a
failure, a redelivery with the same webhook-id, the Chinese page, and delete."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest
from playwright.sync_api import expect
from standardwebhooks import Webhook

from tests.e2e.console.conftest import PASSWORD, confirm_dialog, login_ui, shot, unique
from tests.support.live_server import LiveServer, live_server


class _Receiver:
    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(receiver.status)
                self.end_headers()
                self.wfile.write(b"ok" if receiver.status < 300 else b"nope")

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def wh_server(console_built, tmp_path_factory) -> Iterator[LiveServer]:
    # Its own server: the test's receiver is on 127.0.0.1, which only an operator's allowlist opens.
    with live_server(tmp_path_factory.mktemp("console-webhooks"), REMOTEGPU_WEBHOOK_ALLOW_CIDRS="127.0.0.1/32") as srv:
        yield srv


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    r = _Receiver()
    yield r
    r.close()


@pytest.fixture
def wh_page(browser, wh_server):
    contexts = []

    def make(locale: str = "en-US"):
        context = browser.new_context(base_url=wh_server.url, locale=locale, viewport={"width": 1440, "height": 900})
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


def _wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_add_test_send_log_redeliver_and_delete(wh_page, wh_server, receiver):
    name = unique("hooks")
    wh_server.signup(name, PASSWORD)
    page = wh_page()
    login_ui(page, name)
    page.get_by_test_id("nav-webhooks").click()
    page.get_by_test_id("wh-new").click()
    page.get_by_test_id("wh-form-url").fill(receiver.url)
    page.get_by_test_id("wh-form-description").fill("CI hook")
    page.get_by_test_id("wh-form-save").click()
    secret_box = page.get_by_test_id("wh-secret")
    expect(secret_box).to_contain_text("whsec_")
    secret = secret_box.inner_text().strip()
    shot(page, "webhooks-secret-once")
    page.get_by_test_id("wh-secret-done").click()
    expect(page.get_by_test_id("wh-url")).to_have_text(receiver.url)
    expect(page.get_by_test_id("wh-secret")).to_have_count(0)  # gone once closed, never shown again
    expect(page.get_by_test_id("wh-endpoints")).not_to_contain_text("whsec_")

    page.get_by_test_id("wh-test").click()
    _wait_for(lambda: len(receiver.received) == 1)
    headers, body = receiver.received[0]
    payload = Webhook(secret).verify(body, headers)  # the secret the page showed signs the delivery
    assert payload["type"] == "webhook.test"
    log = page.get_by_test_id("wh-deliveries")
    expect(log.get_by_test_id("wh-delivery-status").first).to_have_text("Delivered")

    receiver.status = 500
    page.get_by_test_id("wh-test").click()
    expect(log.get_by_test_id("wh-delivery-status").first).to_have_text("Failed")
    expect(log.get_by_test_id("wh-delivery-error").first).to_contain_text("HTTP 500")
    shot(page, "webhooks-delivery-log")

    receiver.status = 200
    log.get_by_test_id("wh-redeliver").last.click()  # the oldest: the first test message
    _wait_for(lambda: len(receiver.received) == 3)
    assert receiver.received[2][0]["webhook-id"] == headers["webhook-id"]
    assert Webhook(secret).verify(receiver.received[2][1], receiver.received[2][0])["type"] == "webhook.test"

    zh = wh_page("zh-CN")
    login_ui(zh, name)
    zh.get_by_test_id("nav-webhooks").click()
    expect(zh.get_by_test_id("wh-new")).to_contain_text("添加端点")
    expect(zh.get_by_test_id("wh-url")).to_have_text(receiver.url)
    shot(zh, "webhooks-zh")

    page.get_by_test_id("wh-delete").click()
    confirm_dialog(page)
    expect(page.get_by_test_id("wh-url")).to_have_count(0)
    token = wh_server.login(name, PASSWORD)
    _, workspaces = wh_server.request("GET", "/api/v1/workspaces", token=token)
    personal = next(w["id"] for w in workspaces["items"] if w["is_personal"])
    status, listed = wh_server.request("GET", f"/api/v1/webhooks?workspace_id={personal}", token=token)
    assert status == 200 and listed["total"] == 0
