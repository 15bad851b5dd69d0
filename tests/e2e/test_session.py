"""The console's browser session: httpOnly cookies only, no token in any answer the
console reads, the CSRF token from memory (GET /api/v1/auth/session after a reload);
refresh by a path-scoped cookie bound to a __Host-able binding cookie; Bearer API
clients untouched; and app hosts that never reach the API or the console."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import aiohttp
import pytest

from remotegpu.entrypoints.http.app import create_app
from remotegpu.entrypoints.http.session import BIND_COOKIE, REFRESH_COOKIE, SESSION_COOKIE, SESSION_PATH
from tests.conftest import make_settings, signup
from tests.support.app_hosts import browser_session


@pytest.fixture
async def browser(aiohttp_client, container):
    """A client that keeps cookies, like a browser."""
    return await aiohttp_client(create_app(container, run_background=False), cookie_jar=aiohttp.CookieJar(unsafe=True))


def origin(browser) -> str:
    return str(browser.make_url("")).rstrip("/")


async def login(browser, account) -> dict:
    r = await browser.post(SESSION_PATH, json={"username": account.username, "password": account.password},
                           headers={"Origin": origin(browser)})
    assert r.status == 200, await r.text()
    return await r.json()


def cookie_header(response: aiohttp.ClientResponse, name: str) -> str:
    found = [v for v in response.headers.getall("Set-Cookie", []) if v.startswith(f"{name}=")]
    assert found, response.headers
    return found[0]


async def test_console_login_sets_httponly_host_only_cookies_and_answers_no_token(browser):
    account = await signup(browser, "cookie1")
    r = await browser.post(SESSION_PATH, json={"username": "cookie1", "password": account.password}, headers={"Origin": origin(browser)})
    assert r.status == 200, await r.text()
    body = await r.json()
    assert set(body) == {"csrf_token", "expires_in", "user"} and body["user"]["username"] == "cookie1"
    session = cookie_header(r, SESSION_COOKIE)
    assert "HttpOnly" in session and "SameSite=Lax" in session and "Path=/;" in session + ";" and "Max-Age=" in session
    refresh = cookie_header(r, REFRESH_COOKIE)
    assert "HttpOnly" in refresh and "SameSite=Strict" in refresh and f"Path={SESSION_PATH}" in refresh
    bind = cookie_header(r, BIND_COOKIE)
    assert "HttpOnly" in bind and "SameSite=Strict" in bind
    for header in r.headers.getall("Set-Cookie"):
        assert "Domain" not in header and "Secure" not in header  # host-only; plain HTTP here
    assert not [h for h in r.headers.getall("Set-Cookie") if h.startswith("rgpu_csrf=")]  # no script-readable cookie


async def test_the_session_endpoints_need_an_origin_of_the_console_and_json(browser):
    account = await signup(browser, "cookie1b")
    creds = {"username": "cookie1b", "password": account.password}
    r = await browser.post(SESSION_PATH, json=creds)
    assert r.status == 403 and (await r.json())["error"]["code"] == "origin_required"
    r = await browser.post(SESSION_PATH, json=creds, headers={"Origin": "http://evil.example"})
    assert r.status == 403
    # A cross-site form can post text/plain with a JSON-looking body: refused, nobody logged in.
    r = await browser.post(SESSION_PATH, data='{"username": "cookie1b", "password": "%s"}' % account.password,
                           headers={"Origin": origin(browser), "Content-Type": "text/plain"})
    assert r.status in (415, 422) and not r.headers.getall("Set-Cookie", [])
    r = await browser.post(f"{SESSION_PATH}/refresh", headers={"Origin": "http://evil.example"})
    assert r.status == 403


async def test_api_login_sets_no_cookie(browser):
    account = await signup(browser, "cookie1c")
    r = await browser.post("/api/v1/auth/login", json={"username": "cookie1c", "password": account.password})
    assert r.status == 200 and (await r.json())["access_token"]
    assert not r.headers.getall("Set-Cookie", [])


async def test_the_cookie_authenticates_reads_and_a_reload_gets_the_csrf_token_again(browser):
    account = await signup(browser, "cookie2")
    r = await browser.get(SESSION_PATH)
    assert r.status == 401
    first = await login(browser, account)
    r = await browser.get("/api/v1/users/me")
    assert r.status == 200 and (await r.json())["username"] == "cookie2"
    r = await browser.get(SESSION_PATH)  # the console after a reload
    assert r.status == 200 and r.headers["Cache-Control"] == "no-store"
    again = await r.json()
    assert again["csrf_token"] == first["csrf_token"] and again["user"]["username"] == "cookie2" and 0 < again["expires_in"] <= 900
    # A Bearer caller has no browser session to describe.
    r = await browser.get(SESSION_PATH, headers={"Authorization": f"Bearer {account.token}"})
    assert r.status == 401


async def test_no_cors_header_lets_another_origin_read_the_csrf_token(browser):
    account = await signup(browser, "cookie2b")
    await login(browser, account)
    r = await browser.get(SESSION_PATH, headers={"Origin": "http://x--jupyter.localhost:8080"})
    assert not [h for h in r.headers if h.lower().startswith("access-control-")]
    r = await browser.options(SESSION_PATH, headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in r.headers


async def test_a_state_changing_request_with_the_cookie_needs_the_csrf_header(browser):
    account = await signup(browser, "cookie3")
    session = await login(browser, account)
    r = await browser.patch("/api/v1/users/me", json={"display_name": "x"})
    assert r.status == 403 and (await r.json())["error"]["code"] == "csrf_failed"
    r = await browser.patch("/api/v1/users/me", json={"display_name": "x"}, headers={"X-CSRF-Token": "forged"})
    assert r.status == 403
    r = await browser.patch("/api/v1/users/me", json={"display_name": "x"}, headers={"X-CSRF-Token": session["csrf_token"]})
    assert r.status == 200, await r.text()


async def test_bearer_requests_are_exempt_from_csrf(browser):
    account = await signup(browser, "cookie4")
    await login(browser, account)
    r = await browser.patch("/api/v1/users/me", json={"display_name": "y"}, headers={"Authorization": f"Bearer {account.token}"})
    assert r.status == 200


async def test_refresh_by_cookie_rotates_and_a_replayed_refresh_cookie_is_refused(browser):
    account = await signup(browser, "cookie5")
    await login(browser, account)
    old = {c.key: c.value for c in browser.session.cookie_jar}
    r = await browser.post(f"{SESSION_PATH}/refresh", headers={"Origin": origin(browser)})
    assert r.status == 200, await r.text()
    second = await r.json()
    assert cookie_header(r, REFRESH_COOKIE).split(";")[0] != f"{REFRESH_COOKIE}={old[REFRESH_COOKIE]}"  # rotated
    assert "access_token" not in second and "refresh_token" not in second
    r = await browser.patch("/api/v1/users/me", json={"display_name": "z"}, headers={"X-CSRF-Token": second["csrf_token"]})
    assert r.status == 200
    # The cookies of before the refresh, replayed (stolen): the refresh family is revoked.
    replay = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=replay) as thief:
        replay.update_cookies({REFRESH_COOKIE: old[REFRESH_COOKIE], BIND_COOKIE: old[BIND_COOKIE]}, browser.make_url(SESSION_PATH))
        async with thief.post(browser.make_url(f"{SESSION_PATH}/refresh"), headers={"Origin": origin(browser)}) as r:
            assert r.status == 401


async def test_a_planted_refresh_cookie_without_its_binding_is_refused(browser):
    """A sibling host can plant a (non-__Host-) cookie with a Domain; it cannot plant the
    binding cookie, so a refresh cookie of its choosing logs nobody in."""
    attacker = await signup(browser, "planter")
    r = await browser.post("/api/v1/auth/login", json={"username": "planter", "password": attacker.password})
    planted = (await r.json())["refresh_token"]
    browser.session.cookie_jar.update_cookies({REFRESH_COOKIE: planted}, browser.make_url(SESSION_PATH))
    r = await browser.post(f"{SESSION_PATH}/refresh", headers={"Origin": origin(browser)})
    assert r.status == 401 and (await r.json())["error"]["code"] == "no_session"


async def test_logout_clears_the_cookies_and_revokes_the_refresh_family(browser):
    account = await signup(browser, "cookie6")
    await login(browser, account)
    kept = {c.key: c.value for c in browser.session.cookie_jar}
    r = await browser.delete(SESSION_PATH, headers={"Origin": origin(browser)})
    assert r.status == 204
    assert "Max-Age=0" in cookie_header(r, SESSION_COOKIE) or cookie_header(r, SESSION_COOKIE).startswith(f'{SESSION_COOKIE}=""')
    r = await browser.get("/api/v1/users/me")
    assert r.status == 401
    browser.session.cookie_jar.update_cookies({REFRESH_COOKIE: kept[REFRESH_COOKIE], BIND_COOKIE: kept[BIND_COOKIE]},
                                              browser.make_url(SESSION_PATH))
    r = await browser.post(f"{SESSION_PATH}/refresh", headers={"Origin": origin(browser)})
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
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:  # an app host is another site too
        await browser.ws_connect("/api/v1/environments/nope/terminal", headers={"Origin": "http://x--jupyter.localhost:8080"})
    assert refused.value.status == 403
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:  # same site: authorised, the environment is unknown
        await browser.ws_connect("/api/v1/environments/nope/terminal", headers={"Origin": origin(browser)})
    assert refused.value.status == 404


async def test_on_https_the_cookies_are_host_prefixed_and_secure(aiohttp_client, tmp_path):
    from remotegpu.entrypoints.containers import build_container

    settings = make_settings(tmp_path, public_url="https://gpu.example.com", apps_domain="apps.example.com")
    client = await aiohttp_client(create_app(build_container(settings, persistence="memory"), run_background=False))
    account = await signup(client, "secure1")
    r = await client.post(SESSION_PATH, json={"username": "secure1", "password": account.password},
                          headers={"Origin": "https://gpu.example.com"})
    assert r.status == 200, await r.text()
    cookies = r.headers.getall("Set-Cookie")
    assert cookie_header(r, f"__Host-{SESSION_COOKIE}") and cookie_header(r, f"__Host-{BIND_COOKIE}")
    assert cookie_header(r, f"__Secure-{REFRESH_COOKIE}")
    assert all("Secure" in c and "Domain" not in c for c in cookies)
    # A cookie of the unprefixed name (what a sibling host could plant) is not the session.
    access = cookie_header(r, f"__Host-{SESSION_COOKIE}").split(";")[0].split("=", 1)[1]
    r = await client.get("/api/v1/users/me", headers={"Cookie": f"{SESSION_COOKIE}={access}"})
    assert r.status == 401
    r = await client.get("/api/v1/users/me", headers={"Cookie": f"__Host-{SESSION_COOKIE}={access}"})
    assert r.status == 200


# --- app hosts -----------------------------------------------------------------------------


async def make_env(browser, owner) -> str:
    r = await browser.post(
        "/api/v1/environments", headers=owner.headers,
        json={"name": "e", "workspace_id": owner.personal_workspace_id, "gpu_count": 0, "cpu_cores": 1, "memory_gib": 1},
    )
    assert r.status == 202, await r.text()
    return (await r.json())["id"]


async def test_an_app_host_serves_no_api_and_no_console(browser):
    """Whatever the path and whatever credential comes with it, an app host answers as an
    app host: the API, the console and the session endpoints are not there."""
    account = await signup(browser, "apphost1")
    env_id = await make_env(browser, account)
    await login(browser, account)
    cookies = "; ".join(f"{c.key}={c.value}" for c in browser.session.cookie_jar)
    async with browser_session() as b:
        host = f"http://{env_id}--jupyter.localhost:{browser.port}"
        for path in ("/api/v1/users/me", SESSION_PATH, "/", "/environments", "/api/docs", "/metrics"):
            async with b.get(host + path, headers={"Authorization": f"Bearer {account.token}", "Cookie": cookies}) as r:
                assert r.status == 401, path
                assert (await r.json())["error"]["code"] == "app_login_required", path
        async with b.post(host + "/api/v1/users/me/tokens", json={"name": "stolen"},
                          headers={"Authorization": f"Bearer {account.token}", "Cookie": cookies}) as r:
            assert r.status == 401
        # Names under the apps domain that are no app of ours: nothing at all.
        for label in ("x", f"{env_id}--nope", f"{env_id}--jupyter.deeper", "nope--jupyter"):
            async with b.get(f"http://{label}.localhost:{browser.port}/api/v1/users/me",
                             headers={"Authorization": f"Bearer {account.token}"}) as r:
                assert r.status == 404, label
    r = await browser.get("/api/v1/users/me/tokens", headers=account.headers)
    assert (await r.json())["items"] == []  # nothing was minted


async def test_an_app_navigation_without_app_cookie_goes_to_the_console_authorize_endpoint(browser):
    account = await signup(browser, "apphost2")
    env_id = await make_env(browser, account)
    async with browser_session() as b:
        async with b.get(f"http://{env_id}--jupyter.localhost:{browser.port}/lab?reset", headers={"Accept": "text/html"},
                         allow_redirects=False) as r:
            assert r.status == 302
            location = urlsplit(r.headers["Location"])
    assert location.path == f"/api/v1/environments/{env_id}/apps/jupyter/authorize"
    assert unquote(location.query) == "next=/lab?reset"
    # The authorize endpoint: anonymous → the login page (and back), others → 404, the
    # owner of a stopped environment → 409 (it must run).
    r = await browser.get(f"{location.path}?{location.query}", allow_redirects=False)
    assert r.status == 302 and unquote(r.headers["Location"]) == f"/login?next={location.path}?next=/lab?reset"
    other = await signup(browser, "apphost2b")
    r = await browser.get(f"{location.path}?{location.query}", headers=other.headers, allow_redirects=False)
    assert r.status == 404
    r = await browser.get(f"/api/v1/environments/{env_id}/apps/tensorboard/authorize", headers=account.headers, allow_redirects=False)
    assert r.status == 404
    r = await browser.get(f"{location.path}?{location.query}", headers=account.headers, allow_redirects=False)
    assert r.status == 409


async def test_the_jupyter_url_the_api_gives_is_the_apps_own_host(browser, container):
    from remotegpu.application.environments.app_access import AppAddress

    assert AppAddress.parse("0b8f2a3c-1d2e-4f5a-8b9c-0d1e2f3a4b5c--jupyter") is not None
    app = browser.server.app
    from remotegpu.entrypoints.http.keys import APP_URL

    assert app[APP_URL]("0b8f2a3c-1d2e-4f5a-8b9c-0d1e2f3a4b5c", "jupyter") == \
        "http://0b8f2a3c-1d2e-4f5a-8b9c-0d1e2f3a4b5c--jupyter.localhost:8080/"


async def test_the_cookie_does_not_speak_for_requests_another_sites_page_sends(browser):
    """With apps on *.apps.example.com next to gpu.example.com, SameSite=Lax lets a page on
    an app host send requests that carry the console's cookie; the browser says so
    (Sec-Fetch-Site) and the cookie then authenticates nothing. Navigations still count."""
    account = await signup(browser, "sitecheck")
    await login(browser, account)
    for site in ("same-site", "cross-site"):
        r = await browser.get("/api/v1/users/me", headers={"Sec-Fetch-Site": site, "Sec-Fetch-Mode": "cors"})
        assert r.status == 401, site
        r = await browser.get("/api/v1/users/me", headers={"Sec-Fetch-Site": site, "Sec-Fetch-Mode": "navigate"})
        assert r.status == 200, site
    r = await browser.get("/api/v1/users/me", headers={"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors"})
    assert r.status == 200


async def test_the_bare_apps_domain_sends_browsers_to_the_console(browser):
    """http://localhost:8080 is the apps domain itself in the embedded default (same-site
    with every app host): the console's pages are not served there."""
    async with browser_session() as b:
        async with b.get(f"http://localhost:{browser.port}/environments?x=1", headers={"Accept": "text/html"},
                         allow_redirects=False) as r:
            assert r.status == 302 and r.headers["Location"] == "http://127.0.0.1:8080/environments?x=1"
        async with b.get(f"http://localhost:{browser.port}/api/v1/gpu-types") as r:
            assert r.status == 401  # API clients (agents, the CLI) are served as before
