"""Registration, login, refresh rotation, logout, tokens, SSH keys: through the aiohttp test client."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.conftest import signup


def ed25519_pub(comment="me@laptop") -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode() + " " + comment


async def error_code(resp) -> str:
    body = await resp.json()
    assert set(body) == {"error"} and {"code", "message", "details"} <= set(body["error"])
    return body["error"]["code"]


async def test_register_login_me_and_login_by_email(client):
    acct = await signup(client, "alice")
    r = await client.get("/api/v1/users/me", headers=acct.headers)
    assert r.status == 200
    me = await r.json()
    assert me["username"] == "alice" and me["email"] == "alice@example.com" and me["is_admin"] is False
    assert "password" not in str(me) and "hash" not in str(me)
    r = await client.post("/api/v1/auth/login", json={"username": "ALICE@example.com", "password": acct.password})
    body = await r.json()
    assert r.status == 200 and body["token_type"] == "bearer" and body["expires_in"] > 0


async def test_registration_creates_a_personal_workspace_owned_by_the_user(client):
    acct = await signup(client)
    r = await client.get(f"/api/v1/workspaces/{acct.personal_workspace_id}/members", headers=acct.headers)
    assert [(m["username"], m["role"]) for m in (await r.json())["items"]] == [(acct.username, "owner")]


@pytest.mark.parametrize(
    "payload, status, code",
    [
        ({"username": "x", "email": "x@example.com", "password": "longenough"}, 422, "validation_error"),
        ({"username": "okname", "email": "nope", "password": "longenough"}, 422, "invalid_input"),
        ({"username": "okname", "email": "ok@example.com", "password": "short"}, 422, "validation_error"),
        ({"username": "okname", "email": "ok@example.com"}, 422, "validation_error"),
        ({"username": "okname", "email": "ok@example.com", "password": "longenough", "admin": True}, 422, "validation_error"),
    ],
)
async def test_bad_registration_input_is_422_and_creates_nothing(client, payload, status, code):
    r = await client.post("/api/v1/auth/register", json=payload)
    assert r.status == status
    assert await error_code(r) == code
    r = await client.post("/api/v1/auth/login", json={"username": "okname", "password": "longenough"})
    assert r.status == 401


async def test_duplicate_username_or_email_conflicts(client):
    await signup(client, "bob")
    r = await client.post("/api/v1/auth/register", json={"username": "bob", "email": "other@example.com", "password": "longenough"})
    assert r.status == 409 and await error_code(r) == "username_taken"
    r = await client.post("/api/v1/auth/register", json={"username": "bob2", "email": "BOB@example.com", "password": "longenough"})
    assert r.status == 409 and await error_code(r) == "email_taken"


async def test_malformed_json_is_422_not_500(client):
    r = await client.post("/api/v1/auth/login", data=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status == 422 and await error_code(r) == "invalid_json"
    r = await client.post("/api/v1/auth/login", json=[1, 2])
    assert r.status == 422


async def test_wrong_password_and_unknown_user_look_the_same(client):
    await signup(client, "carol")
    r1 = await client.post("/api/v1/auth/login", json={"username": "carol", "password": "wrong-password"})
    r2 = await client.post("/api/v1/auth/login", json={"username": "nobody", "password": "wrong-password"})
    assert r1.status == r2.status == 401
    assert (await r1.json())["error"] == (await r2.json())["error"]


async def test_refresh_rotates_and_reuse_revokes_the_whole_family(client):
    acct = await signup(client)
    r = await client.post("/api/v1/auth/refresh", json={"refresh_token": acct.refresh_token})
    assert r.status == 200
    second = (await r.json())["refresh_token"]
    assert second != acct.refresh_token
    # The first token was used: presenting it again is theft; the family dies.
    r = await client.post("/api/v1/auth/refresh", json={"refresh_token": acct.refresh_token})
    assert r.status == 401 and await error_code(r) == "refresh_token_reused"
    r = await client.post("/api/v1/auth/refresh", json={"refresh_token": second})
    assert r.status == 401


async def test_logout_revokes_the_refresh_token(client):
    acct = await signup(client)
    r = await client.post("/api/v1/auth/logout", json={"refresh_token": acct.refresh_token})
    assert r.status == 204
    r = await client.post("/api/v1/auth/refresh", json={"refresh_token": acct.refresh_token})
    assert r.status == 401


async def test_login_rate_limit_per_account_answers_429_with_retry_after(client):
    await signup(client, "dave")
    statuses = []
    for _ in range(12):
        r = await client.post("/api/v1/auth/login", json={"username": "dave", "password": "wrong-password"})
        statuses.append(r.status)
    assert statuses[:10] == [401] * 10
    assert r.status == 429 and int(r.headers["Retry-After"]) > 0
    assert await error_code(r) == "rate_limited"


async def test_login_rate_limit_per_ip(aiohttp_client, tmp_path):
    from remotegpu.entrypoints.containers import build_container
    from remotegpu.entrypoints.http.app import create_app
    from tests.conftest import make_settings

    container = build_container(make_settings(tmp_path, login_limit_per_ip=3), persistence="memory")
    client = await aiohttp_client(create_app(container, run_background=False))
    codes = [
        (await client.post("/api/v1/auth/login", json={"username": f"u{i}", "password": "whatever1"})).status
        for i in range(5)
    ]
    assert codes == [401, 401, 401, 429, 429]


async def test_bad_bearer_tokens_are_401(client):
    for header in ("Bearer nope", "Bearer rgp_nope", "Basic abc", "Bearer "):
        r = await client.get("/api/v1/users/me", headers={"Authorization": header})
        assert r.status == 401, header
    r = await client.get("/api/v1/users/me")
    assert r.status == 401 and await error_code(r) == "unauthenticated"


async def test_api_token_is_shown_once_works_as_bearer_and_stops_when_revoked(client):
    acct = await signup(client)
    r = await client.post("/api/v1/users/me/tokens", json={"name": "ci"}, headers=acct.headers)
    assert r.status == 201
    created = await r.json()
    secret = created["token"]
    assert secret.startswith("rgp_")
    listing = await (await client.get("/api/v1/users/me/tokens", headers=acct.headers)).json()
    assert listing["total"] == 1 and secret not in str(listing)
    assert listing["items"][0]["prefix"] == secret[:10]
    r = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {secret}"})
    assert r.status == 200 and (await r.json())["id"] == acct.id
    r = await client.delete(f"/api/v1/users/me/tokens/{created['id']}", headers=acct.headers)
    assert r.status == 204
    r = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {secret}"})
    assert r.status == 401


async def test_someone_elses_token_cannot_be_revoked(client):
    a, b = await signup(client), await signup(client)
    created = await (await client.post("/api/v1/users/me/tokens", json={"name": "x"}, headers=a.headers)).json()
    r = await client.delete(f"/api/v1/users/me/tokens/{created['id']}", headers=b.headers)
    assert r.status == 404


async def test_ssh_keys_add_list_delete_with_fingerprint(client):
    acct = await signup(client)
    pub = ed25519_pub()
    r = await client.post("/api/v1/users/me/ssh-keys", json={"public_key": pub}, headers=acct.headers)
    assert r.status == 201
    key = await r.json()
    assert key["fingerprint"].startswith("SHA256:") and key["name"] == "me@laptop" and key["key_type"] == "ssh-ed25519"
    r = await client.post("/api/v1/users/me/ssh-keys", json={"public_key": pub}, headers=acct.headers)
    assert r.status == 409
    listing = await (await client.get("/api/v1/users/me/ssh-keys", headers=acct.headers)).json()
    assert [k["id"] for k in listing["items"]] == [key["id"]]
    other = await signup(client)
    assert (await client.delete(f"/api/v1/users/me/ssh-keys/{key['id']}", headers=other.headers)).status == 404
    assert (await client.delete(f"/api/v1/users/me/ssh-keys/{key['id']}", headers=acct.headers)).status == 204
    assert (await (await client.get("/api/v1/users/me/ssh-keys", headers=acct.headers)).json())["total"] == 0


async def test_garbage_ssh_key_is_422(client):
    acct = await signup(client)
    r = await client.post("/api/v1/users/me/ssh-keys", json={"public_key": "ssh-rsa garbage"}, headers=acct.headers)
    assert r.status == 422 and await error_code(r) == "invalid_input"


async def test_every_response_carries_a_request_id(client):
    r = await client.get("/api/v1/users/me", headers={"X-Request-ID": "abc-123"})
    assert r.headers["X-Request-ID"] == "abc-123"
    r = await client.get("/api/v1/nope")
    assert r.status == 404 and len(r.headers["X-Request-ID"]) == 32
    assert await error_code(r) == "not_found"
