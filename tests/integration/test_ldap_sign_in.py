"""Sign-in against a real OpenLDAP server (Debian's slapd), over the API, on SQLite
and PostgreSQL: the directory checks the password, the platform keeps none, and the
account follows the entry's groups (platform admin, workspace roles) at each sign-in."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from remotegpu.adapters.db.migrate import upgrade
from remotegpu.entrypoints.containers import build_container
from remotegpu.entrypoints.http.app import create_app
from tests.conftest import make_settings, signup
from tests.support.components import postgres_url
from tests.support.ldap_server import GROUPS, PEOPLE, SERVICE_DN, SERVICE_PASSWORD, start_ldap_server


@pytest.fixture
def ldap():
    server = start_ldap_server()
    yield server
    server.stop()


def _ldap_settings(ldap, **extra) -> dict:
    return dict(ldap_url=ldap.url, ldap_user_base=PEOPLE, ldap_bind_dn=SERVICE_DN, ldap_bind_password=SERVICE_PASSWORD,
                ldap_group_base=GROUPS, ldap_admin_groups="platform-admins", **extra)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    if request.param == "postgres":
        from tests.support.postgres import reset_schema

        url = postgres_url()
        reset_schema(url)
        return url
    return f"sqlite+aiosqlite:///{tmp_path / 'remotegpu.db'}"


async def _client(aiohttp_client, tmp_path, database_url, **settings):
    container = build_container(make_settings(tmp_path, database_url=database_url, **settings), persistence="sql")
    await asyncio.to_thread(upgrade, database_url)
    return await aiohttp_client(create_app(container, run_background=False), cookie_jar=aiohttp.DummyCookieJar())


async def _login(client, username: str, password: str):
    return await client.post("/api/v1/auth/login", json={"username": username, "password": password})


async def test_directory_people_sign_in_and_follow_their_groups(aiohttp_client, tmp_path, ldap, database_url):
    ldap.add_person("alice", "alice-directory-pw", mail="alice@lab.example", name="Alice Liddell")
    ldap.add_person("bob", "bob-directory-pw")
    ldap.add_group("platform-admins", ["bob"])
    ldap.add_group("ml-team", ["alice"])
    # The workspace the group maps to is made first, by a local owner.
    bootstrap = await _client(aiohttp_client, tmp_path, database_url)
    owner = await signup(bootstrap)
    r = await bootstrap.post("/api/v1/workspaces", json={"name": "ml"}, headers=owner.headers)
    ws = (await r.json())["id"]
    await bootstrap.close()
    client = await _client(aiohttp_client, tmp_path, database_url,
                           **_ldap_settings(ldap, ldap_workspace_groups=f"ml-team={ws}:member"))

    r = await client.get("/api/v1/auth/providers")
    assert await r.json() == {"local_passwords": True, "ldap": True, "oidc": None}

    # A wrong password, an unknown name and a filter-widening name all fail alike.
    for name, password in (("alice", "wrong-password"), ("nobody", "whatever-pw"), ("*", "alice-directory-pw"),
                           ("alice)(uid=*", "alice-directory-pw")):
        r = await _login(client, name, password)
        assert r.status == 401, (name, await r.text())
        assert (await r.json())["error"]["code"] == "invalid_credentials"

    r = await _login(client, "alice", "alice-directory-pw")
    assert r.status == 200, await r.text()
    alice = {"Authorization": f"Bearer {(await r.json())['access_token']}"}
    me = await (await client.get("/api/v1/users/me", headers=alice)).json()
    assert (me["username"], me["email"], me["display_name"], me["auth_source"], me["is_admin"]) == (
        "alice", "alice@lab.example", "Alice Liddell", "ldap", False)
    workspaces = {w["id"]: w for w in (await (await client.get("/api/v1/workspaces", headers=alice)).json())["items"]}
    assert ws in workspaces, "the ml-team group made her a member of the mapped workspace"
    assert any(w["is_personal"] for w in workspaces.values()), "a personal workspace, as at registration"
    members = {m["user_id"]: m["role"] for m in (await (await client.get(f"/api/v1/workspaces/{ws}/members",
                                                                         headers=owner.headers)).json())["items"]}
    assert members[me["id"]] == "member"

    # The platform keeps no password: a password change is refused, and the directory's
    # new password works at once while the old one stops.
    r = await client.post("/api/v1/users/me/password", json={"current_password": "alice-directory-pw",
                                                              "new_password": "another-password"}, headers=alice)
    assert r.status == 409 and (await r.json())["error"]["code"] == "password_managed_externally"
    ldap.set_password("alice", "alice-new-pw-123")
    assert (await _login(client, "alice", "alice-directory-pw")).status == 401
    assert (await _login(client, "alice", "alice-new-pw-123")).status == 200

    # Groups are read at each sign-in: leaving ml-team ends the membership.
    ldap.set_members("ml-team", [])
    assert (await _login(client, "alice", "alice-new-pw-123")).status == 200
    members = {m["user_id"] for m in (await (await client.get(f"/api/v1/workspaces/{ws}/members",
                                                              headers=owner.headers)).json())["items"]}
    assert me["id"] not in members

    # The admin group makes a platform admin; leaving it takes that away.
    r = await _login(client, "bob", "bob-directory-pw")
    bob = {"Authorization": f"Bearer {(await r.json())['access_token']}"}
    assert (await (await client.get("/api/v1/users/me", headers=bob)).json())["is_admin"] is True
    ldap.set_members("platform-admins", [])
    r = await _login(client, "bob", "bob-directory-pw")
    bob = {"Authorization": f"Bearer {(await r.json())['access_token']}"}
    assert (await (await client.get("/api/v1/users/me", headers=bob)).json())["is_admin"] is False

    # Removed from the directory: no more sign-ins.
    ldap.delete_person("bob")
    assert (await _login(client, "bob", "bob-directory-pw")).status == 401

    # Local accounts still sign in with their local password, and a directory person
    # with a local account's name never takes it over.
    assert (await _login(client, owner.username, owner.password)).status == 200
    ldap.add_person(owner.username, "directory-owns-it-now")
    assert (await _login(client, owner.username, "directory-owns-it-now")).status == 401


async def test_local_passwords_off_leaves_only_the_directory(aiohttp_client, tmp_path, ldap):
    url = f"sqlite+aiosqlite:///{tmp_path / 'remotegpu.db'}"
    bootstrap = await _client(aiohttp_client, tmp_path, url)
    local = await signup(bootstrap)
    await bootstrap.close()
    ldap.add_person("carol", "carol-directory-pw")
    client = await _client(aiohttp_client, tmp_path, url, **_ldap_settings(ldap, local_passwords=False))
    assert await (await client.get("/api/v1/auth/providers")).json() == {"local_passwords": False, "ldap": True, "oidc": None}
    r = await _login(client, local.username, local.password)
    assert r.status == 401 and (await r.json())["error"]["code"] == "invalid_credentials"
    r = await client.post("/api/v1/auth/register", json={"username": "dave", "email": "dave@example.com",
                                                          "password": "dave-password-1"})
    assert r.status == 403
    assert (await _login(client, "carol", "carol-directory-pw")).status == 200


async def test_an_unreachable_directory_answers_503_and_local_sign_in_still_works(aiohttp_client, tmp_path, ldap):
    url = f"sqlite+aiosqlite:///{tmp_path / 'remotegpu.db'}"
    client = await _client(aiohttp_client, tmp_path, url, **_ldap_settings(ldap))
    local = await signup(client)
    ldap.stop()
    r = await _login(client, "somebody", "some-password")
    assert r.status == 503 and (await r.json())["error"]["code"] == "directory_unavailable"
    assert (await _login(client, local.username, local.password)).status == 200
