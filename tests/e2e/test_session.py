"""The browser session: login sets an httpOnly SameSite=Lax cookie, refresh renews it,
logout clears it; state-changing requests made with the cookie need the CSRF token;
Bearer requests are exempt; websocket upgrades and /proxy/ check the Origin."""

from __future__ import annotations

from urllib.parse import unquote

import aiohttp
import pytest

from remotegpu.entrypoints.http.app import create_app
from remotegpu.entrypoints.http.session import CSRF_COOKIE, SESSION_COOKIE
from tests.conftest import signup


@pytest.fixture
async def browser(aiohttp_client, container):
    """A client that keeps cookies, like a browser."""
    return await aiohttp_client(create_app(container, run_background=False), cookie_jar=aiohttp.CookieJar(unsafe=True))


async def login(browser, account) -> dict:
    r = await browser.post("/api/v1/auth/login", json={"username": account.username, "password": account.password})
    assert r.status == 200, await r.text()
    return await r.json()


def cookie_header(response: aiohttp.ClientResponse, name: str) -> str:
    found = [v for v in response.headers.getall("Set-Cookie", []) if v.startswith(f"{name}=")]
    assert found, response.headers
    return found[0]


async def test_login_sets_an_httponly_samesite_session_cookie_and_answers_a_csrf_token(browser):
    account = await signup(browser, "cookie1")
    r = await browser.post("/api/v1/auth/login", json={"username": "cookie1", "password": account.password})
    body = await r.json()
    session = cookie_header(r, SESSION_COOKIE)
    assert "HttpOnly" in session and "SameSite=Lax" in session and "Path=/" in session
    assert "Max-Age=" in session
    csrf = cookie_header(r, CSRF_COOKIE)
    assert "HttpOnly" not in csrf and f"{CSRF_COOKIE}={body['csrf_token']}" in csrf
    assert body["csrf_token"] and body["access_token"] not in body["csrf_token"]


async def test_the_cookie_authenticates_reads(browser):
    account = await signup(browser, "cookie2")
    await login(browser, account)
    r = await browser.get("/api/v1/users/me")
    assert r.status == 200 and (await r.json())["username"] == "cookie2"


async def test_a_state_changing_request_with_the_cookie_needs_the_csrf_header(browser):
    account = await signup(browser, "cookie3")
    tokens = await login(browser, account)
    r = await browser.patch("/api/v1/users/me", json={"display_name": "x"})
    assert r.status == 403 and (await r.json())["error"]["code"] == "csrf_failed"
    r = await browser.patch("/api/v1/users/me", json={"display_name": "x"}, headers={"X-CSRF-Token": "forged"})
    assert r.status == 403
    r = await browser.patch("/api/v1/users/me", json={"display_name": "x"}, headers={"X-CSRF-Token": tokens["csrf_token"]})
    assert r.status == 200, await r.text()


async def test_bearer_requests_are_exempt_from_csrf(browser):
    account = await signup(browser, "cookie4")
    await login(browser, account)
    r = await browser.patch("/api/v1/users/me", json={"display_name": "y"}, headers={"Authorization": f"Bearer {account.token}"})
    assert r.status == 200


async def test_refresh_renews_the_cookie_and_the_csrf_token(browser):
    account = await signup(browser, "cookie5")
    first = await login(browser, account)
    r = await browser.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert r.status == 200
    second = await r.json()
    assert cookie_header(r, SESSION_COOKIE).startswith(f"{SESSION_COOKIE}={second['access_token']}")
    r = await browser.patch("/api/v1/users/me", json={"display_name": "z"}, headers={"X-CSRF-Token": second["csrf_token"]})
    assert r.status == 200


async def test_logout_clears_the_cookie(browser):
    account = await signup(browser, "cookie6")
    tokens = await login(browser, account)
    r = await browser.post("/api/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]})
    assert r.status == 204
    assert cookie_header(r, SESSION_COOKIE).startswith(f'{SESSION_COOKIE}=""') or "Max-Age=0" in cookie_header(r, SESSION_COOKIE)
    r = await browser.get("/api/v1/users/me")
    assert r.status == 401


async def test_a_forged_or_stale_cookie_is_anonymous(browser):
    browser.session.cookie_jar.update_cookies({SESSION_COOKIE: "not-a-token"})
    r = await browser.get("/api/v1/users/me")
    assert r.status == 401
    r = await browser.get("/api/v1/gpu-types")
    assert r.status == 401


async def test_websocket_upgrades_from_another_site_are_refused(browser):
    account = await signup(browser, "cookie7")
    await login(browser, account)
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await browser.ws_connect("/api/v1/environments/nope/terminal", headers={"Origin": "http://evil.example"})
    assert refused.value.status == 403
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:  # same site: authorised, the environment is unknown
        await browser.ws_connect("/api/v1/environments/nope/terminal", headers={"Origin": str(browser.make_url("")).rstrip("/")})
    assert refused.value.status == 404


async def test_proxy_needs_authentication_and_hides_unknown_environments(browser):
    r = await browser.get("/proxy/environments/nope/jupyter/api/status")
    assert r.status == 401
    r = await browser.get("/proxy/environments/nope/jupyter/lab", headers={"Accept": "text/html"}, allow_redirects=False)
    assert r.status == 302 and unquote(r.headers["Location"]) == "/login?next=/proxy/environments/nope/jupyter/lab"
    account = await signup(browser, "cookie8")
    await login(browser, account)
    r = await browser.get("/proxy/environments/nope/jupyter/api/status")
    assert r.status == 404
    r = await browser.post("/proxy/environments/nope/jupyter/api/kernels", headers={"Origin": "http://evil.example"})
    assert r.status == 403


async def test_jupyterlabs_own_authorization_header_does_not_hide_the_session_cookie(browser):
    """JupyterLab's frontend sends ``Authorization: token <the token in its page>`` on
    every call; under /proxy/ that is Jupyter's business, the cookie still authenticates.
    Elsewhere a non-Bearer Authorization stays an error."""
    jupyters = {"Authorization": "token ********************************"}
    r = await browser.get("/proxy/environments/nope/jupyter/api/kernelspecs", headers=jupyters)
    assert r.status == 401  # no cookie yet: anonymous, as without the header
    account = await signup(browser, "cookie9")
    await login(browser, account)
    r = await browser.get("/proxy/environments/nope/jupyter/api/kernelspecs", headers=jupyters)
    assert r.status == 404  # signed in by the cookie; the environment is unknown
    r = await browser.get("/api/v1/users/me", headers=jupyters)
    assert r.status == 401 and (await r.json())["error"]["code"] == "unauthenticated"


async def test_someone_elses_environment_is_404_through_proxy_and_terminal(browser, container):
    owner = await signup(browser, "owner9")
    r = await browser.post(
        "/api/v1/environments", headers=owner.headers,
        json={"name": "e", "workspace_id": owner.personal_workspace_id, "gpu_count": 0, "cpu_cores": 1, "memory_gib": 1},
    )
    assert r.status == 202, await r.text()
    env_id = (await r.json())["id"]
    other = await signup(browser, "other9")
    for path in (f"/proxy/environments/{env_id}/jupyter/api/status", f"/api/v1/environments/{env_id}/terminal"):
        r = await browser.get(path, headers=other.headers)
        assert r.status == 404, path
    r = await browser.get(f"/proxy/environments/{env_id}/jupyter/api/status", headers=owner.headers)
    assert r.status == 409  # the owner may enter; it is not running (no agent in this test)
