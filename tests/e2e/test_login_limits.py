"""Failed-login limits that stop a guesser without locking the owner out, registration
limits, and the client address behind a trusted reverse proxy.

The test client connects from 127.0.0.1, configured as the trusted proxy, so each
request picks its client address with ``X-Forwarded-For`` as nginx would set it.
"""

from __future__ import annotations

import pytest

from remotegpu.entrypoints.containers import build_container
from remotegpu.entrypoints.http.app import create_app
from remotegpu.entrypoints.http.keys import CONTAINER
from tests.conftest import make_settings

PASSWORD = "correct horse battery"
ATTACKER, OWNER = "203.0.113.66", "198.51.100.7"


async def make_client(aiohttp_client, tmp_path, **overrides):
    settings = dict(trusted_proxies="127.0.0.1", login_limit_per_account=5, login_limit_per_account_all_ips=12,
                    login_limit_per_ip=10_000)
    container = build_container(make_settings(tmp_path, **{**settings, **overrides}), persistence="memory")
    return await aiohttp_client(create_app(container, run_background=False))


async def register(client, username: str) -> None:
    """Register only (no login: every login attempt counts against the account)."""
    body = {"username": username, "email": f"{username}@example.com", "password": PASSWORD}
    r = await client.post("/api/v1/auth/register", json=body)
    assert r.status == 201, await r.text()


async def login(client, username: str, password: str, ip: str) -> int:
    r = await client.post("/api/v1/auth/login", json={"username": username, "password": password}, headers={"X-Forwarded-For": ip})
    if r.status == 429:
        assert int(r.headers["Retry-After"]) > 0 and (await r.json())["error"]["code"] == "rate_limited"
    return r.status


async def test_a_guesser_is_stopped_but_the_owner_logs_in_from_elsewhere(aiohttp_client, tmp_path):
    client = await make_client(aiohttp_client, tmp_path)
    await register(client, "victim")
    assert [await login(client, "victim", "wrong-guess", ATTACKER) for _ in range(7)] == [401] * 5 + [429] * 2
    # The right password from the attacker's address is refused too: guessing stays stopped.
    assert await login(client, "victim", PASSWORD, ATTACKER) == 429
    # The owner, from their own address, by username and by email.
    assert await login(client, "victim", PASSWORD, OWNER) == 200
    assert await login(client, "victim@example.com", PASSWORD, OWNER) == 200


async def test_username_and_email_are_one_account(aiohttp_client, tmp_path):
    client = await make_client(aiohttp_client, tmp_path)
    await register(client, "alias")
    statuses = [await login(client, name, "wrong-guess", ATTACKER) for name in ["alias", "ALIAS@example.com"] * 3]
    assert statuses == [401] * 5 + [429]
    assert await login(client, "alias@example.com", "wrong-guess", ATTACKER) == 429


async def test_a_success_clears_the_owner_address_count(aiohttp_client, tmp_path):
    client = await make_client(aiohttp_client, tmp_path)
    await register(client, "typo")
    assert [await login(client, "typo", "wrong-guess", OWNER) for _ in range(4)] == [401] * 4
    assert await login(client, "typo", PASSWORD, OWNER) == 200
    assert [await login(client, "typo", "wrong-guess", OWNER) for _ in range(5)] == [401] * 5


async def test_guessing_from_many_addresses_hits_the_account_backstop(aiohttp_client, tmp_path):
    client = await make_client(aiohttp_client, tmp_path)
    await register(client, "target")
    statuses = [await login(client, "target", "wrong-guess", f"203.0.113.{i}") for i in range(14)]
    assert statuses == [401] * 12 + [429] * 2


async def test_unknown_names_are_limited_like_known_ones(aiohttp_client, tmp_path):
    # Same answers in the same order: the limits tell nobody whether the name exists.
    client = await make_client(aiohttp_client, tmp_path)
    await register(client, "exists")
    known = [await login(client, "exists", "wrong-guess", ATTACKER) for _ in range(7)]
    unknown = [await login(client, "doesnotexist", "wrong-guess", ATTACKER) for _ in range(7)]
    assert known == unknown == [401] * 5 + [429] * 2


async def test_the_per_address_limit_counts_the_real_client_not_the_proxy(aiohttp_client, tmp_path):
    client = await make_client(aiohttp_client, tmp_path, login_limit_per_ip=3)
    assert [await login(client, f"u{i}", "whatever1", ATTACKER) for i in range(4)] == [401, 401, 401, 429]
    # Another client behind the same proxy has its own bucket.
    assert await login(client, "u9", "whatever1", OWNER) == 401
    # What the attacker writes left of the proxy's hop changes nothing.
    assert await login(client, "u9", "whatever1", f"{OWNER}, {ATTACKER}") == 429


async def test_x_forwarded_for_is_ignored_without_trusted_proxies(aiohttp_client, tmp_path):
    client = await make_client(aiohttp_client, tmp_path, trusted_proxies="", login_limit_per_ip=3)
    codes = [await login(client, f"u{i}", "whatever1", f"203.0.113.{i}") for i in range(4)]
    assert codes == [401, 401, 401, 429]


async def test_registration_is_limited_per_address(aiohttp_client, tmp_path):
    client = await make_client(aiohttp_client, tmp_path, register_limit_per_ip=3)

    async def register(name: str, ip: str) -> int:
        body = {"username": name, "email": f"{name}@example.com", "password": PASSWORD}
        r = await client.post("/api/v1/auth/register", json=body, headers={"X-Forwarded-For": ip})
        return r.status

    assert [await register(f"reg{i}", ATTACKER) for i in range(5)] == [201, 201, 201, 429, 429]
    assert await register("someone", OWNER) == 201


async def test_the_audit_log_records_the_client_address(aiohttp_client, tmp_path):
    client = await make_client(aiohttp_client, tmp_path)
    await register(client, "audited")
    assert await login(client, "audited", "wrong-guess", f"6.6.6.6, {ATTACKER}") == 401
    async with client.server.app[CONTAINER].uow() as uow:
        events, _ = await uow.audit.list(action="auth.login.failed", actor_id=None, limit=10, offset=0)
    assert [e.ip for e in events] == [ATTACKER]


@pytest.mark.parametrize("limit", [5])
async def test_the_backstop_is_never_below_the_per_address_limit(aiohttp_client, tmp_path, limit):
    # An operator who raises the per-address limit above the backstop gets the larger one.
    client = await make_client(aiohttp_client, tmp_path, login_limit_per_account=limit, login_limit_per_account_all_ips=2)
    await register(client, "raised")
    assert [await login(client, "raised", "wrong-guess", ATTACKER) for _ in range(limit + 1)] == [401] * limit + [429]
