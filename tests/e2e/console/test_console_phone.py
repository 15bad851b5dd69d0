"""SMS in the browser: verify a phone number with the code a local SMS provider received
(the provider checks each request's signature), then opt a category into SMS and into
the email digest."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator
from urllib.parse import parse_qsl

import pytest
from playwright.sync_api import expect

from tests.e2e.console.conftest import PASSWORD, login_ui, unique
from tests.support.live_server import LiveServer, live_server
from tests.support.sms_provider import expected_signature

SECRET = "console-sms-secret"


class _Provider:
    def __init__(self) -> None:
        self.accepted: list[dict[str, str]] = []
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
                params = dict(parse_qsl(raw, keep_blank_values=True))
                ok = params.get("Signature") == expected_signature(params, SECRET)
                if ok:
                    provider.accepted.append(params)
                body = json.dumps({"Code": "OK" if ok else "SignatureDoesNotMatch", "RequestId": "r"}).encode()
                self.send_response(200 if ok else 400)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def provider() -> Iterator[_Provider]:
    p = _Provider()
    yield p
    p.close()


@pytest.fixture(scope="module")
def sms_server(console_built, tmp_path_factory, provider) -> Iterator[LiveServer]:
    env = dict(REMOTEGPU_SMS_PROVIDER="aliyun", REMOTEGPU_SMS_ENDPOINT=provider.url, REMOTEGPU_SMS_ACCESS_KEY_ID="id",
               REMOTEGPU_SMS_ACCESS_KEY_SECRET=SECRET, REMOTEGPU_SMS_SIGN_NAME="RemoteGPU",
               REMOTEGPU_SMS_TEMPLATE_VERIFY="SMS_1", REMOTEGPU_SMS_TEMPLATE_NOTIFY="SMS_2",
               # Email on (the digest is an email option); nothing is sent in this test.
               REMOTEGPU_SMTP_HOST="127.0.0.1", REMOTEGPU_SMTP_PORT="1", REMOTEGPU_SMTP_SECURITY="none")
    with live_server(tmp_path_factory.mktemp("console-sms"), **env) as srv:
        yield srv


def test_verify_a_phone_number_and_opt_into_sms_and_a_digest(browser, sms_server, provider):
    context = browser.new_context(base_url=sms_server.url, locale="en-US", viewport={"width": 1440, "height": 900})
    context.set_default_timeout(15_000)
    try:
        name = unique("phone")
        sms_server.signup(name, PASSWORD)
        page = context.new_page()
        login_ui(page, name)
        page.goto("/account?tab=phone")
        page.get_by_test_id("phone-number").fill("138 0013 8000")
        page.get_by_test_id("phone-send-code").click()
        expect(page.get_by_test_id("phone-code")).to_be_visible()
        assert provider.accepted[-1]["PhoneNumbers"] == "13800138000"
        code = json.loads(provider.accepted[-1]["TemplateParam"])["code"]
        page.get_by_test_id("phone-code").fill(code)
        page.get_by_test_id("phone-verify").click()
        expect(page.get_by_test_id("phone-verified")).to_contain_text("+8613800138000")
        expect(page.get_by_test_id("phone-verified")).to_contain_text("Verified")

        page.goto("/notifications?tab=preferences")
        page.get_by_test_id("pref-support-sms").click()
        page.get_by_test_id("pref-environment-digest").click()
        page.get_by_test_id("digest-period").get_by_text("Hourly").click()
        expect(page.get_by_test_id("pref-security-digest").locator("input")).to_be_disabled()
        page.get_by_test_id("save-preferences").click()
        expect(page.locator(".el-message--success")).to_be_visible()
        token = sms_server.login(name, PASSWORD)
        status, prefs = sms_server.request("GET", "/api/v1/users/me/notification-preferences", token=token)
        assert status == 200 and prefs["categories"]["support"]["sms"] is True and "sms" in prefs["channels"]
        assert prefs["digest"] == {"categories": ["environment"], "period": "hourly"}
    finally:
        context.close()
