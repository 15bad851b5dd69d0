"""Sign-in with an OpenID Connect provider (npm oidc-provider, a certified
implementation) from the console, in Chromium: authorization code + PKCE, the account
made on first sign-in and found by its subject afterwards, groups mapped to platform
admin, logout ending the platform session and the provider's (RP-initiated logout to its
end_session_endpoint: the next sign-in asks for the account again), and a forged
callback refused."""

from __future__ import annotations

import json
import urllib.request

from playwright.sync_api import expect

from tests.e2e.console.conftest import shot
from tests.support.live_server import free_port, live_server
from tests.support.oidc_server import CLIENT_ID, CLIENT_SECRET, start_oidc_provider


def _provider_login(page, account: str) -> None:
    """The provider's development login and consent pages."""
    page.locator("input[name=login]").fill(account)
    page.locator("input[name=password]").fill("any")
    page.locator("button[type=submit]").click()
    consent = page.locator("button[type=submit]")  # "Continue" (consent), when asked
    page.wait_for_load_state()
    if "/interaction/" in page.url and consent.count():
        consent.first.click()


def test_oidc_sign_in_from_the_console(browser, console_built, tmp_path):
    port = free_port()
    provider = start_oidc_provider(f"http://127.0.0.1:{port}/api/v1/auth/oidc/callback", {
        "frank": {"email": "frank@idp.example", "name": "Frank Ocean", "groups": ["gpu-admins"]},
        "grace": {"email": "grace@idp.example", "name": "Grace Hopper", "groups": []},
    })
    try:
        env = {"REMOTEGPU_HTTP_PORT": str(port), "REMOTEGPU_OIDC_ISSUER": provider.issuer,
               "REMOTEGPU_OIDC_CLIENT_ID": CLIENT_ID, "REMOTEGPU_OIDC_CLIENT_SECRET": CLIENT_SECRET,
               "REMOTEGPU_OIDC_DISPLAY_NAME": "Lab SSO", "REMOTEGPU_OIDC_SCOPES": "openid email profile groups",
               "REMOTEGPU_OIDC_ADMIN_GROUPS": "gpu-admins"}
        with live_server(tmp_path / "srv", **env) as server:
            for locale, label in (("zh-CN", "使用 Lab SSO 登录"), ("en-US", "Sign in with Lab SSO")):
                context = browser.new_context(base_url=server.url, locale=locale, viewport={"width": 1280, "height": 800})
                context.set_default_timeout(20_000)
                page = context.new_page()
                page.goto("/login")
                expect(page.get_by_test_id("login-sso")).to_have_text(label)
                shot(page, f"login-oidc-{locale}")
                page.get_by_test_id("login-sso").click()
                page.wait_for_url(f"{provider.issuer}/**")
                _provider_login(page, "frank")
                page.wait_for_url(f"{server.url}/environments")
                expect(page.get_by_test_id("user-menu")).to_contain_text("Frank Ocean")
                me = page.evaluate("fetch('/api/v1/users/me').then(r => r.json())")
                assert (me["username"], me["email"], me["auth_source"], me["is_admin"]) == (
                    "frank", "frank@idp.example", "oidc", True), me
                # Logout ends the platform session, then the provider's: the browser goes to its
                # end_session_endpoint (with the ID token as hint), confirms there, and comes back.
                page.get_by_test_id("user-menu").click()
                page.get_by_test_id("logout").click()
                page.wait_for_url(f"{provider.issuer}/**")
                assert "/session/end" in page.url, page.url
                shot(page, f"oidc-provider-logout-{locale}")
                page.locator("button[name=logout][value=yes], button[type=submit]").first.click()
                page.wait_for_url(f"{server.url}/login**")
                assert page.evaluate("fetch('/api/v1/users/me').then(r => r.status)") == 401
                # The provider's session is gone: signing in again asks for the account.
                page.get_by_test_id("login-sso").click()
                page.wait_for_url(f"{provider.issuer}/**")
                expect(page.locator("input[name=login]")).to_be_visible()
                context.close()
            # Signed in twice (two browsers): still one account, found by its subject.
            admin = server.login("admin", "admin-password-123")
            req = urllib.request.Request(f"{server.url}/api/v1/users?search=frank",
                                         headers={"Authorization": f"Bearer {admin}"})
            users = json.load(urllib.request.urlopen(req))["items"]
            assert [u["username"] for u in users] == ["frank"]

            # A callback without this browser's pending sign-in is refused (login CSRF).
            context = browser.new_context(base_url=server.url, locale="en-US")
            page = context.new_page()
            page.goto("/api/v1/auth/oidc/callback?code=stolen&state=forged")
            page.wait_for_url("**/login**")
            expect(page.get_by_test_id("login-sso-error")).to_contain_text("oidc_no_pending")
            assert page.evaluate("fetch('/api/v1/users/me').then(r => r.status)") == 401
            context.close()
    finally:
        provider.stop()
