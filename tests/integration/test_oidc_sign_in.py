"""Sign-in with a real OpenID Connect provider (npm oidc-provider) over plain HTTP, as
a script or another client would drive it: authorization code + PKCE, the account made
on first sign-in, found again by its subject, a disabled account
refused, the pending-sign-in cookie required (login CSRF), and logout at the provider
(RP-initiated logout: its end_session_endpoint with the ID token as hint, back to /login)."""

from __future__ import annotations

import html
import http.cookiejar
import json
import re
import urllib.parse
import urllib.request

from tests.support.live_server import free_port, live_server
from tests.support.oidc_server import CLIENT_ID, CLIENT_SECRET, start_oidc_provider


def _browser():
    jar = http.cookiejar.CookieJar()
    return urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar)), jar


def _submit_forms(opener, response, account: str):
    """Fill the provider's development login and consent forms until it lets go."""
    for _ in range(4):
        if "/interaction/" not in response.geturl():
            return response
        page = response.read().decode()
        action = html.unescape(re.search(r'<form[^>]*action="([^"]+)"', page).group(1))
        fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page))
        if fields.get("prompt") == "login":
            fields.update(login=account, password="any")
        url = urllib.parse.urljoin(response.geturl(), action)
        response = opener.open(urllib.request.Request(url, data=urllib.parse.urlencode(fields).encode(), method="POST"))
    raise AssertionError("the provider kept asking")


def _me(opener, base: str) -> tuple[int, dict]:
    try:
        with opener.open(f"{base}/api/v1/users/me") as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def test_oidc_code_flow_over_http(tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    provider = start_oidc_provider(f"{base}/api/v1/auth/oidc/callback", {
        "heidi": {"email": "heidi@idp.example", "name": "Heidi K", "groups": ["ml"]},
    })
    try:
        with live_server(tmp_path / "srv", REMOTEGPU_HTTP_PORT=str(port), REMOTEGPU_OIDC_ISSUER=provider.issuer,
                         REMOTEGPU_OIDC_CLIENT_ID=CLIENT_ID, REMOTEGPU_OIDC_CLIENT_SECRET=CLIENT_SECRET,
                         REMOTEGPU_OIDC_SCOPES="openid email profile groups") as server:
            admin = {"Authorization": f"Bearer {server.login('admin', 'admin-password-123')}"}
            opener, _ = _browser()
            r = opener.open(f"{base}/api/v1/auth/oidc/start?next=/workspaces")
            assert r.geturl().startswith(provider.issuer), "sent to the provider"
            r = _submit_forms(opener, r, "heidi")
            assert urllib.parse.urlparse(r.geturl()).path == "/workspaces", r.geturl()
            status, me = _me(opener, base)
            assert status == 200 and (me["username"], me["email"], me["auth_source"]) == ("heidi", "heidi@idp.example", "oidc")

            # Logout at the provider too: /oidc/logout sends the browser to its end_session_endpoint
            # with this sign-in's ID token as hint; confirming there comes back to the console's
            # login page, and the provider's session is gone (the next sign-in asks for the account).
            r = opener.open(f"{base}/api/v1/auth/oidc/logout")
            assert r.geturl().startswith(f"{provider.issuer}/session/end"), r.geturl()
            page = r.read().decode()
            action = html.unescape(re.search(r'<form[^>]*action="([^"]+)"', page).group(1))
            fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page))
            fields["logout"] = "yes"
            r = opener.open(urllib.request.Request(urllib.parse.urljoin(r.geturl(), action),
                                                   data=urllib.parse.urlencode(fields).encode(), method="POST"))
            assert r.geturl() == f"{base}/login", r.geturl()
            r = opener.open(f"{base}/api/v1/auth/oidc/start")
            assert "/interaction/" in r.geturl() and 'name="login"' in r.read().decode(), "the provider's session ended"
            # Without the ID token cookie (a session not from the provider): just the login page.
            plain, _ = _browser()
            assert plain.open(f"{base}/api/v1/auth/oidc/logout").geturl() == f"{base}/login"

            # A second sign-in finds the same account by its subject.
            again, _ = _browser()
            _submit_forms(again, again.open(f"{base}/api/v1/auth/oidc/start"), "heidi")
            assert _me(again, base)[1]["id"] == me["id"]

            # Disabled on the platform: the provider's word is not enough.
            code, _ = server.request("PATCH", f"/api/v1/users/{me['id']}", {"is_active": False}, token=admin["Authorization"][7:])
            assert code == 200
            third, _ = _browser()
            r = _submit_forms(third, third.open(f"{base}/api/v1/auth/oidc/start"), "heidi")
            assert "sso_error=account_disabled" in r.geturl()
            assert _me(third, base)[0] == 401

            # The callback without this browser's pending cookie: refused, no session.
            stranger, _ = _browser()
            r = stranger.open(f"{base}/api/v1/auth/oidc/callback?code=x&state=y")
            assert "sso_error=oidc_no_pending" in r.geturl() and _me(stranger, base)[0] == 401
            # An open redirect is not possible through next=.
            r = stranger.open(f"{base}/api/v1/auth/oidc/start?next=//evil.example/")
            assert "evil" not in urllib.parse.unquote(r.geturl())
    finally:
        provider.stop()
