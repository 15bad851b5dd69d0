"""Sign-in with the organisation's LDAP directory in the console: the login page says
so, offers no registration when local passwords are off, and a directory person lands
in the console (zh-CN and English)."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.e2e.console.conftest import shot
from tests.support.ldap_server import GROUPS, PEOPLE, SERVICE_DN, SERVICE_PASSWORD, start_ldap_server
from tests.support.live_server import live_server


def test_directory_sign_in_in_both_languages(browser, console_built, tmp_path):
    ldap = start_ldap_server()
    try:
        ldap.add_person("erin", "erin-directory-pw", name="Erin Lee")
        env = {"REMOTEGPU_LDAP_URL": ldap.url, "REMOTEGPU_LDAP_USER_BASE": PEOPLE, "REMOTEGPU_LDAP_BIND_DN": SERVICE_DN,
               "REMOTEGPU_LDAP_BIND_PASSWORD": SERVICE_PASSWORD, "REMOTEGPU_LDAP_GROUP_BASE": GROUPS,
               "REMOTEGPU_LOCAL_PASSWORDS": "false"}
        with live_server(tmp_path / "srv", **env) as server:
            for locale, hint in (("zh-CN", "LDAP 目录"), ("en-US", "organisation account")):
                context = browser.new_context(base_url=server.url, locale=locale, viewport={"width": 1280, "height": 800})
                context.set_default_timeout(15_000)
                page = context.new_page()
                page.goto("/login")
                expect(page.get_by_test_id("login-directory-hint")).to_contain_text(hint)
                expect(page.get_by_test_id("to-register")).to_have_count(0)  # no local accounts to make
                shot(page, f"login-ldap-{locale}")
                page.get_by_test_id("login-username").fill("erin")
                page.get_by_test_id("login-password").fill("wrong-password")
                page.get_by_test_id("login-submit").click()
                expect(page.locator(".el-message--error")).to_be_visible()
                page.get_by_test_id("login-password").fill("erin-directory-pw")
                page.get_by_test_id("login-submit").click()
                page.wait_for_url("**/environments")
                expect(page.get_by_test_id("user-menu")).to_contain_text("Erin Lee")
                context.close()
    finally:
        ldap.stop()
