"""Revocation is immediate: a password change, a disable or "sign out everywhere" voids
the access tokens issued before (they are stateless JWTs: the user's session epoch
decides), revokes refresh families, and optionally the API tokens."""

from __future__ import annotations

import aiohttp

from remotegpu.entrypoints.http.app import create_app
from tests.conftest import signup

NEW_PASSWORD = "a brand new passphrase"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def login(client, username: str, password: str) -> dict:
    r = await client.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert r.status == 200, await r.text()
    return await r.json()


async def me(client, token: str) -> tuple[int, str | None]:
    r = await client.get("/api/v1/users/me", headers=bearer(token))
    return r.status, (await r.json())["error"]["code"] if r.status != 200 else None


async def refresh(client, refresh_token: str) -> int:
    return (await client.post("/api/v1/auth/refresh", json={"refresh_token": refresh_token})).status


async def api_token(client, token: str) -> str:
    r = await client.post("/api/v1/users/me/tokens", json={"name": "ci"}, headers=bearer(token))
    assert r.status == 201
    return (await r.json())["token"]


async def test_a_password_change_ends_every_other_session_at_once(client):
    acct = await signup(client, "changer")
    laptop = await login(client, "changer", acct.password)  # another device
    ci = await api_token(client, acct.token)
    assert await me(client, laptop["access_token"]) == (200, None)  # in the user cache now
    r = await client.post(
        "/api/v1/users/me/password", json={"current_password": acct.password, "new_password": NEW_PASSWORD}, headers=acct.headers
    )
    assert r.status == 204, await r.text()
    # Every access token issued before: refused on the very next request, this one's included.
    assert await me(client, laptop["access_token"]) == (401, "session_ended")
    assert await me(client, acct.token) == (401, "session_ended")
    # The other device's login is revoked; this one's refresh token goes on.
    assert await refresh(client, laptop["refresh_token"]) == 401
    r = await client.post("/api/v1/auth/refresh", json={"refresh_token": acct.refresh_token})
    assert r.status == 200
    assert await me(client, (await r.json())["access_token"]) == (200, None)
    # API tokens were not asked to go: they stay.
    assert await me(client, ci) == (200, None)
    # Only the new password logs in.
    assert (await client.post("/api/v1/auth/login", json={"username": "changer", "password": acct.password})).status == 401
    await login(client, "changer", NEW_PASSWORD)


async def test_a_password_change_can_revoke_the_api_tokens_too(client):
    acct = await signup(client, "tokens")
    ci = await api_token(client, acct.token)
    body = {"current_password": acct.password, "new_password": NEW_PASSWORD, "revoke_api_tokens": True}
    assert (await client.post("/api/v1/users/me/password", json=body, headers=acct.headers)).status == 204
    assert await me(client, ci) == (401, "invalid_token")
    fresh = await login(client, "tokens", NEW_PASSWORD)
    listing = await (await client.get("/api/v1/users/me/tokens", headers=bearer(fresh["access_token"]))).json()
    assert [t["revoked_at"] is not None for t in listing["items"]] == [True]


async def test_a_wrong_current_password_changes_nothing(client):
    acct = await signup(client, "wrongcur")
    body = {"current_password": "not my password", "new_password": NEW_PASSWORD, "revoke_api_tokens": True}
    r = await client.post("/api/v1/users/me/password", json=body, headers=acct.headers)
    assert r.status == 401 and (await r.json())["error"]["code"] == "invalid_credentials"
    assert await me(client, acct.token) == (200, None)
    assert await refresh(client, acct.refresh_token) == 200


async def test_disabling_voids_access_tokens_for_good(client, new_account):
    admin = await new_account(admin=True)
    acct = await signup(client, "disabled")
    assert await me(client, acct.token) == (200, None)
    r = await client.patch(f"/api/v1/users/{acct.id}", json={"is_active": False}, headers=admin.headers)
    assert r.status == 200
    assert await me(client, acct.token) == (401, "account_disabled")
    assert await refresh(client, acct.refresh_token) == 401
    # Enabled again: the tokens from before the disable stay dead; a new login works.
    r = await client.patch(f"/api/v1/users/{acct.id}", json={"is_active": True}, headers=admin.headers)
    assert r.status == 200
    assert await me(client, acct.token) == (401, "session_ended")
    assert await refresh(client, acct.refresh_token) == 401
    fresh = await login(client, "disabled", acct.password)
    assert await me(client, fresh["access_token"]) == (200, None)


async def test_an_admin_signs_a_user_out_everywhere(client, new_account):
    admin = await new_account(admin=True)
    acct = await signup(client, "stolenlaptop")
    other = await login(client, "stolenlaptop", acct.password)
    ci = await api_token(client, acct.token)
    r = await client.post(f"/api/v1/users/{acct.id}/sign-out", json={}, headers=admin.headers)
    assert r.status == 204, await r.text()
    for session in (acct.token, other["access_token"]):
        assert await me(client, session) == (401, "session_ended")
    assert await refresh(client, acct.refresh_token) == 401 and await refresh(client, other["refresh_token"]) == 401
    assert await me(client, ci) == (200, None)
    r = await client.post(f"/api/v1/users/{acct.id}/sign-out", json={"revoke_api_tokens": True}, headers=admin.headers)
    assert r.status == 204
    assert await me(client, ci) == (401, "invalid_token")
    # The admin's own session is untouched; the user logs in again normally.
    assert await me(client, admin.token) == (200, None)
    await login(client, "stolenlaptop", acct.password)
    # Audited, and only admins may do it; an unknown user is 404.
    events = await (await client.get("/api/v1/audit-events?action=admin.user.signed_out", headers=admin.headers)).json()
    assert events["total"] == 2 and events["items"][0]["target_id"] == acct.id
    assert (await client.post(f"/api/v1/users/{admin.id}/sign-out", json={}, headers=(await signup(client)).headers)).status == 403
    assert (await client.post("/api/v1/users/nope/sign-out", json={}, headers=admin.headers)).status == 404


async def test_a_user_signs_out_everywhere(client):
    acct = await signup(client, "selfout")
    other = await login(client, "selfout", acct.password)
    assert (await client.post("/api/v1/users/me/sign-out", json={}, headers=acct.headers)).status == 204
    assert await me(client, acct.token) == (401, "session_ended")
    assert await me(client, other["access_token"]) == (401, "session_ended")
    assert await refresh(client, acct.refresh_token) == 401


async def test_the_browser_session_cookie_ends_with_a_password_change(aiohttp_client, container):
    browser = await aiohttp_client(create_app(container, run_background=False), cookie_jar=aiohttp.CookieJar(unsafe=True))
    acct = await signup(browser, "cookieuser")
    r = await browser.post("/api/v1/auth/session", json={"username": "cookieuser", "password": acct.password},
                           headers={"Origin": f"http://{browser.host}:{browser.port}"})
    assert r.status == 200, await r.text()
    tokens = await r.json()
    assert (await browser.get("/api/v1/users/me")).status == 200  # by the cookie
    r = await browser.post(
        "/api/v1/users/me/password", json={"current_password": acct.password, "new_password": NEW_PASSWORD},
        headers={"X-CSRF-Token": tokens["csrf_token"]},
    )
    assert r.status == 204, await r.text()
    # The cookie carries an access token from before the change: no session any more.
    assert (await browser.get("/api/v1/users/me")).status == 401


async def test_a_revoked_api_token_fails_at_once_even_right_after_use(client):
    acct = await signup(client)
    secret = await api_token(client, acct.token)
    tokens = await (await client.get("/api/v1/users/me/tokens", headers=acct.headers)).json()
    assert await me(client, secret) == (200, None)
    assert (await client.delete(f"/api/v1/users/me/tokens/{tokens['items'][0]['id']}", headers=acct.headers)).status == 204
    assert await me(client, secret) == (401, "invalid_token")


async def test_guessing_the_current_password_is_limited(client):
    acct = await signup(client, "guessed")
    body = {"current_password": "guess", "new_password": NEW_PASSWORD}
    statuses = [(await client.post("/api/v1/users/me/password", json=body, headers=acct.headers)).status for _ in range(11)]
    assert statuses == [401] * 10 + [429]
