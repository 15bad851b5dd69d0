"""Register, log in, add an SSH key; the session refreshes itself; log out."""

from __future__ import annotations

from playwright.sync_api import expect


def test_register_login_and_add_ssh_key(page, ui):
    name = ui.unique("alice")
    page.goto("/")
    page.wait_for_url("**/login**")
    ui.shot(page, "login")

    page.get_by_test_id("to-register").click()
    page.get_by_test_id("register-username").fill(name)
    page.get_by_test_id("register-email").fill(f"{name}@example.com")
    page.get_by_test_id("register-password").fill("short")
    page.get_by_test_id("register-submit").click()
    expect(page.get_by_text("At least 8 characters")).to_be_visible()  # client-side rule, nothing sent
    page.get_by_test_id("register-password").fill(ui.password)
    ui.shot(page, "register")
    page.get_by_test_id("register-submit").click()
    page.wait_for_url("**/environments")
    expect(page.get_by_test_id("user-menu")).to_contain_text(name)
    ui.shot(page, "environments")

    # Log out, then log back in with a wrong and then the right password.
    page.get_by_test_id("user-menu").click()
    page.get_by_test_id("logout").click()
    page.wait_for_url("**/login**")
    assert "rgpu_session" not in {c["name"] for c in page.context.cookies()}
    page.get_by_test_id("login-username").fill(name)
    page.get_by_test_id("login-password").fill("wrong password!")
    page.get_by_test_id("login-submit").click()
    expect(page.locator(".el-message--error")).to_contain_text("Wrong username or password")
    ui.login(page, name)

    # SSH keys: garbage is refused with a readable message, a real key is listed.
    page.get_by_test_id("nav-account").click()
    page.wait_for_url("**/account**")
    page.get_by_test_id("ssh-key-input").fill("ssh-rsa not-a-key")
    page.get_by_test_id("ssh-key-add").click()
    expect(page.locator(".el-message--error").last).to_be_visible()
    expect(page.get_by_test_id("ssh-key-table")).to_contain_text("No SSH keys yet")

    key = ui.ssh_public_key()
    page.get_by_test_id("ssh-key-input").fill(key)
    page.get_by_test_id("ssh-key-name").fill("laptop")
    page.get_by_test_id("ssh-key-add").click()
    table = page.get_by_test_id("ssh-key-table")
    expect(table).to_contain_text("laptop")
    expect(table).to_contain_text("SHA256:")
    ui.shot(page, "account-ssh-keys")

    # Survives a reload (server state, not page state).
    page.reload()
    expect(page.get_by_test_id("ssh-key-table")).to_contain_text("laptop")

    # API token: shown once, in a dialog.
    page.get_by_role("tab", name="API tokens").click()
    page.get_by_test_id("token-name").fill("ci")
    page.get_by_test_id("token-create").click()
    secret = page.get_by_test_id("token-secret")
    expect(secret).to_be_visible()
    assert len(secret.inner_text().strip()) > 20
    ui.shot(page, "account-token-created")


def cookies(page) -> dict[str, dict]:
    return {c["name"]: c for c in page.context.cookies()}


def replace_cookie(page, name: str, value: str) -> None:
    old = cookies(page)[name]
    page.context.add_cookies([{**old, "value": value}])


def test_session_refreshes_itself(page, ui):
    """The console holds no token: the session is in httpOnly cookies, and the refresh
    cookie (scoped to /api/v1/auth/session) renews an expired access cookie."""
    name = ui.user("bob")
    ui.login(page, name)
    before = cookies(page)
    assert before["rgpu_session"]["httpOnly"] and before["rgpu_refresh"]["httpOnly"] and before["rgpu_bind"]["httpOnly"]
    assert before["rgpu_refresh"]["path"] == "/api/v1/auth/session" and before["rgpu_refresh"]["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""
    assert page.evaluate("Object.keys(localStorage).filter(k => k !== 'rgpu.locale').concat(Object.keys(sessionStorage))") == []
    # The access cookie "expires": the reloaded console finds no session, refreshes once by cookie.
    replace_cookie(page, "rgpu_session", "expired.garbage.token")
    page.reload()
    expect(page.get_by_test_id("user-menu")).to_contain_text(name)
    page.get_by_test_id("nav-account").click()
    expect(page.get_by_test_id("ssh-key-table")).to_be_visible()
    after = cookies(page)
    assert after["rgpu_refresh"]["value"] != before["rgpu_refresh"]["value"]  # rotated
    assert after["rgpu_session"]["value"] != "expired.garbage.token"
    expect(page.locator(".el-message--error")).to_have_count(0)
    # A state-changing request works after the reload: the CSRF token was fetched again.
    page.get_by_test_id("ssh-key-input").fill(ui.ssh_public_key())
    page.get_by_test_id("ssh-key-add").click()
    expect(page.get_by_test_id("ssh-key-table")).to_contain_text("SHA256:")


def test_a_dead_session_goes_back_to_login(page, ui):
    name = ui.user("carol")
    ui.login(page, name)
    replace_cookie(page, "rgpu_session", "x")
    replace_cookie(page, "rgpu_refresh", "rgr_revoked")
    page.goto("/account")
    page.wait_for_url("**/login**")
    expect(page.get_by_test_id("login-username")).to_be_visible()
