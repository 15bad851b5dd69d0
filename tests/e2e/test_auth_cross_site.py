"""Login CSRF: the auth endpoints refuse what a foreign page can make a browser send.

A page on another site can submit an HTML form to our login without any CORS
preflight: ``enctype="text/plain"`` lets it shape the body into valid JSON, e.g.

    <form method="POST" action="https://gpu.example/api/v1/auth/login" enctype="text/plain">
      <input name='{"username":"mallory","password":"mallory-pass' value='word"}'>
    </form>

sends ``{"username":"mallory","password":"mallory-pass=word"}`` as ``text/plain``. If
that logged in, the victim's browser would carry the attacker's session (login CSRF).
The tests send exactly those requests with a cookie-keeping aiohttp client, as the
browser would, and check that nobody is logged in.
"""

from __future__ import annotations

import aiohttp
import pytest

from remotegpu.entrypoints.containers import build_container
from remotegpu.entrypoints.http.app import create_app
from remotegpu.entrypoints.http.keys import CONTAINER
from remotegpu.entrypoints.http.session import SESSION_COOKIE
from tests.conftest import make_settings, signup

EVIL = "https://evil.example"
MALLORY_PASSWORD = "mallory-pass=word"  # the '=' is what a text/plain form puts between name and value
FORM_BODY = b'{"username":"mallory","password":"mallory-pass=word"}\r\n'

# What Chromium sends with a cross-site form submission (enctype=text/plain).
BROWSER_FORM_HEADERS = {
    "Content-Type": "text/plain",
    "Origin": EVIL,
    "Referer": EVIL + "/",
    "Sec-Fetch-Site": "cross-site",
    "Sec-Fetch-Mode": "navigate",
    "Sec-Fetch-Dest": "document",
    "Upgrade-Insecure-Requests": "1",
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
}


@pytest.fixture
async def browser(aiohttp_client, container):
    """A client that keeps cookies, like a browser."""
    return await aiohttp_client(create_app(container, run_background=False), cookie_jar=aiohttp.CookieJar(unsafe=True))


async def mallory(browser) -> None:
    r = await browser.post(
        "/api/v1/auth/register", json={"username": "mallory", "email": "mallory@example.com", "password": MALLORY_PASSWORD}
    )
    assert r.status == 201, await r.text()
    browser.session.cookie_jar.clear()


def session_cookies(response: aiohttp.ClientResponse) -> list[str]:
    return [v for v in response.headers.getall("Set-Cookie", []) if v.startswith(f"{SESSION_COOKIE}=")]


async def successful_logins(browser) -> int:
    async with browser.server.app[CONTAINER].uow() as uow:
        _, total = await uow.audit.list(action="auth.login.succeeded", actor_id=None, limit=1, offset=0)
    return total


async def test_the_form_body_is_what_a_json_parser_would_accept():
    # The premise of the attack: without the checks, this body is a valid login.
    import json

    assert json.loads(FORM_BODY) == {"username": "mallory", "password": MALLORY_PASSWORD}


async def test_a_cross_site_text_plain_form_logs_nobody_in(browser):
    await mallory(browser)
    r = await browser.post("/api/v1/auth/login", data=FORM_BODY, headers=BROWSER_FORM_HEADERS)
    assert r.status == 403 and (await r.json())["error"]["code"] == "origin_mismatch"
    assert session_cookies(r) == [] and SESSION_COOKIE not in {c.key for c in browser.session.cookie_jar}
    assert (await browser.get("/api/v1/users/me")).status == 401
    assert await successful_logins(browser) == 0


@pytest.mark.parametrize(
    "content_type, body",
    [
        ("text/plain", FORM_BODY),
        ("text/plain;charset=UTF-8", FORM_BODY),
        ("application/x-www-form-urlencoded", b"username=mallory&password=mallory-pass%3Dword"),
        ("multipart/form-data; boundary=x", b'--x\r\nContent-Disposition: form-data; name="username"\r\n\r\nmallory\r\n--x--\r\n'),
    ],
)
async def test_without_an_origin_a_non_json_body_is_refused_too(browser, content_type, body):
    # Some browsers and privacy settings leave Origin out: the content type alone refuses.
    await mallory(browser)
    headers = {k: v for k, v in BROWSER_FORM_HEADERS.items() if k != "Origin"} | {"Content-Type": content_type}
    r = await browser.post("/api/v1/auth/login", data=body, headers=headers)
    error = (await r.json())["error"]
    assert r.status == 422 and error["code"] == "unsupported_media_type", error
    assert session_cookies(r) == []
    assert (await browser.get("/api/v1/users/me")).status == 401


@pytest.mark.parametrize("path", ["/api/v1/auth/login", "/api/v1/auth/register", "/api/v1/auth/refresh", "/api/v1/auth/logout"])
async def test_every_auth_endpoint_refuses_a_foreign_origin_even_with_json(browser, path):
    # JSON from another origin needs a CORS preflight we never grant; refused anyway.
    await mallory(browser)
    body = {"username": "mallory", "password": MALLORY_PASSWORD, "refresh_token": "rgr_x", "email": "m2@example.com"}
    body = {k: v for k, v in body.items() if k in {
        "/api/v1/auth/login": {"username", "password"},
        "/api/v1/auth/register": {"username", "password", "email"},
        "/api/v1/auth/refresh": {"refresh_token"},
        "/api/v1/auth/logout": {"refresh_token"},
    }[path]}
    for origin in (EVIL, "null", f"http://127.0.0.1.evil.example:{browser.port}"):
        r = await browser.post(path, json=body, headers={"Origin": origin})
        assert r.status == 403 and (await r.json())["error"]["code"] == "origin_mismatch", (origin, await r.text())
        assert session_cookies(r) == []


async def test_the_console_own_origin_and_non_browser_clients_still_log_in(browser):
    await mallory(browser)
    own = f"http://{browser.host}:{browser.port}"
    r = await browser.post("/api/v1/auth/login", json={"username": "mallory", "password": MALLORY_PASSWORD}, headers={"Origin": own})
    assert r.status == 200 and not session_cookies(r)  # the API login answers tokens only
    r = await browser.post("/api/v1/auth/session", json={"username": "mallory", "password": MALLORY_PASSWORD}, headers={"Origin": own})
    assert r.status == 200 and session_cookies(r)  # the console's login sets the cookie session
    browser.session.cookie_jar.clear()
    r = await browser.post("/api/v1/auth/login", json={"username": "mallory", "password": MALLORY_PASSWORD})  # CLI: no Origin
    assert r.status == 200
    r = await browser.post(
        "/api/v1/auth/login", data=FORM_BODY, headers={"Content-Type": "application/json; charset=utf-8", "Origin": own}
    )
    assert r.status == 200
    assert await successful_logins(browser) == 4


async def test_the_configured_public_url_is_this_site(aiohttp_client, tmp_path):
    container = build_container(make_settings(tmp_path, public_url="https://gpu.example"), persistence="memory")
    browser = await aiohttp_client(create_app(container, run_background=False))
    await mallory(browser)
    body = {"username": "mallory", "password": MALLORY_PASSWORD}
    assert (await browser.post("/api/v1/auth/login", json=body, headers={"Origin": "https://gpu.example"})).status == 200
    assert (await browser.post("/api/v1/auth/login", json=body, headers={"Origin": "https://gpu.example.evil"})).status == 403


async def test_other_json_routes_refuse_a_non_json_body_as_well(client):
    acct = await signup(client)
    r = await client.post("/api/v1/workspaces", data=b'{"name": "by form"}', headers={**acct.headers, "Content-Type": "text/plain"})
    assert r.status == 422 and (await r.json())["error"]["code"] == "unsupported_media_type"
    r = await client.post(
        "/api/v1/workspaces", data=b'{"name": "vendor json"}', headers={**acct.headers, "Content-Type": "application/vnd.api+json"}
    )
    assert r.status == 201
    # A route with a body model and no body at all still answers as before (422 for missing fields).
    r = await client.post("/api/v1/workspaces", headers=acct.headers)
    assert r.status == 422 and (await r.json())["error"]["code"] == "validation_error"
