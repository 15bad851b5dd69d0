"""Every endpoint × every kind of caller → the expected status.

Callers: anonymous, a user of another tenant, and workspace viewer / member / admin,
and a platform admin who is not a member. A workspace you are not in answers 404.
"""

from __future__ import annotations

import pytest

from tests.conftest import signup
from tests.support.webhooks import seed_webhook
from tests.support.workspaces import join_workspace

CALLERS = ["anonymous", "other", "viewer", "member", "ws_admin", "platform_admin"]

# (method, path template, body, expected statuses in CALLERS order)
MATRIX = [
    ("GET", "/api/v1/workspaces/{ws}", None, [401, 404, 200, 200, 200, 200]),
    ("PATCH", "/api/v1/workspaces/{ws}", {"name": "renamed"}, [401, 404, 403, 403, 200, 200]),
    ("DELETE", "/api/v1/workspaces/{ws}", None, [401, 404, 403, 403, 403, 204]),
    ("GET", "/api/v1/workspaces/{ws}/members", None, [401, 404, 200, 200, 200, 200]),
    # Members join by accepting an invitation; only platform admins add directly (audited).
    ("POST", "/api/v1/workspaces/{ws}/members", {"username": "{newcomer}", "role": "viewer"}, [401, 404, 403, 403, 403, 201]),
    ("POST", "/api/v1/workspaces/{ws}/invitations", {"username": "{newcomer}", "role": "viewer"}, [401, 404, 403, 403, 201, 201]),
    ("GET", "/api/v1/workspaces/{ws}/invitations", None, [401, 404, 403, 403, 200, 200]),
    ("DELETE", "/api/v1/workspaces/{ws}/invitations/{invitation}", None, [401, 404, 403, 403, 204, 204]),
    ("GET", "/api/v1/users/me/invitations", None, [401, 200, 200, 200, 200, 200]),
    # The pending invitation is addressed to someone else: it does not exist for any caller here.
    ("POST", "/api/v1/users/me/invitations/{invitation}/accept", None, [401, 404, 404, 404, 404, 404]),
    ("POST", "/api/v1/users/me/invitations/{invitation}/decline", None, [401, 404, 404, 404, 404, 404]),
    ("PATCH", "/api/v1/workspaces/{ws}/members/{target}", {"role": "viewer"}, [401, 404, 403, 403, 200, 200]),
    ("DELETE", "/api/v1/workspaces/{ws}/members/{target}", None, [401, 404, 403, 403, 204, 204]),
    ("GET", "/api/v1/workspaces/{ws}/quota", None, [401, 404, 200, 200, 200, 200]),
    ("PUT", "/api/v1/workspaces/{ws}/quota", {"max_gpus": 4}, [401, 404, 403, 403, 403, 200]),
    ("DELETE", "/api/v1/workspaces/{ws}/quota", None, [401, 404, 403, 403, 403, 200]),
    ("GET", "/api/v1/users/{target}/quota", None, [401, 403, 403, 403, 403, 200]),
    ("GET", "/api/v1/users/me/quota", None, [401, 200, 200, 200, 200, 200]),
    ("PUT", "/api/v1/users/{target}/quota", {"max_gpus": 2, "max_workspaces": 1}, [401, 403, 403, 403, 403, 200]),
    ("DELETE", "/api/v1/users/{target}/quota", None, [401, 403, 403, 403, 403, 200]),
    ("GET", "/api/v1/workspaces", None, [401, 200, 200, 200, 200, 200]),
    ("GET", "/api/v1/workspaces?all=true", None, [401, 403, 403, 403, 403, 200]),
    ("POST", "/api/v1/workspaces", {"name": "another"}, [401, 201, 201, 201, 201, 201]),
    ("GET", "/api/v1/users/me", None, [401, 200, 200, 200, 200, 200]),
    ("GET", "/api/v1/users/me/ssh-keys", None, [401, 200, 200, 200, 200, 200]),
    ("GET", "/api/v1/users/me/tokens", None, [401, 200, 200, 200, 200, 200]),
    ("POST", "/api/v1/users/me/tokens", {"name": "t"}, [401, 201, 201, 201, 201, 201]),
    ("GET", "/api/v1/users", None, [401, 403, 403, 403, 403, 200]),
    ("GET", "/api/v1/users/{target}", None, [401, 403, 403, 403, 403, 200]),
    ("PATCH", "/api/v1/users/{target}", {"is_active": False}, [401, 403, 403, 403, 403, 200]),
    ("GET", "/api/v1/audit-events", None, [401, 403, 403, 403, 403, 200]),
    ("POST", "/api/v1/invites", {}, [401, 403, 403, 403, 403, 201]),
    ("GET", "/api/v1/hosts", None, [401, 403, 403, 403, 403, 200]),
    ("POST", "/api/v1/hosts/{host}/token", None, [401, 403, 403, 403, 403, 200]),
    ("DELETE", "/api/v1/hosts/{host}/token", None, [401, 403, 403, 403, 403, 204]),
    ("PATCH", "/api/v1/hosts/{host}", {"cpu_overcommit": 2.0}, [401, 403, 403, 403, 403, 200]),
    ("GET", "/api/v1/gpu-types?gpu_count=1&cpu_cores=2&memory_gib=4", None, [401, 200, 200, 200, 200, 200]),
    ("DELETE", "/api/v1/hosts/{host}?force=true", None, [401, 403, 403, 403, 403, 204]),
    ("POST", "/api/v1/users/me/sign-out", {}, [401, 204, 204, 204, 204, 204]),
    ("POST", "/api/v1/users/{target}/sign-out", {}, [401, 403, 403, 403, 403, 204]),
    # The console's cookie session: Bearer callers have none; its POST/DELETE need the console's Origin.
    ("GET", "/api/v1/auth/session", None, [401, 401, 401, 401, 401, 401]),
    ("POST", "/api/v1/auth/session", {"username": "x", "password": "y"}, [403, 403, 403, 403, 403, 403]),
    ("POST", "/api/v1/auth/session/refresh", None, [403, 403, 403, 403, 403, 403]),
    ("DELETE", "/api/v1/auth/session", None, [403, 403, 403, 403, 403, 403]),
    # Notifications are the signed-in user's own; {notification} is the target user's: 404 for everyone else.
    ("GET", "/api/v1/notifications", None, [401, 200, 200, 200, 200, 200]),
    ("POST", "/api/v1/notifications/read-all", None, [401, 200, 200, 200, 200, 200]),
    ("POST", "/api/v1/notifications/{notification}/read", None, [401, 404, 404, 404, 404, 404]),
    ("GET", "/api/v1/users/me/notification-preferences", None, [401, 200, 200, 200, 200, 200]),
    ("PUT", "/api/v1/users/me/notification-preferences", {"locale": "zh-CN"}, [401, 200, 200, 200, 200, 200]),
    # Webhooks: workspace admins (and platform admins) manage a workspace's endpoints.
    ("GET", "/api/v1/webhooks/event-types", None, [401, 200, 200, 200, 200, 200]),
    ("GET", "/api/v1/webhooks?workspace_id={ws}", None, [401, 404, 403, 403, 200, 200]),
    ("POST", "/api/v1/webhooks", {"workspace_id": "{ws}", "url": "https://hooks.example.com/in"}, [401, 404, 403, 403, 201, 201]),
    ("GET", "/api/v1/webhooks/{webhook}", None, [401, 404, 403, 403, 200, 200]),
    ("PATCH", "/api/v1/webhooks/{webhook}", {"description": "d"}, [401, 404, 403, 403, 200, 200]),
    ("DELETE", "/api/v1/webhooks/{webhook}", None, [401, 404, 403, 403, 204, 204]),
    ("POST", "/api/v1/webhooks/{webhook}/rotate-secret", None, [401, 404, 403, 403, 200, 200]),
    ("POST", "/api/v1/webhooks/{webhook}/test", None, [401, 404, 403, 403, 200, 200]),
    ("GET", "/api/v1/webhooks/{webhook}/deliveries", None, [401, 404, 403, 403, 200, 200]),
    ("POST", "/api/v1/webhooks/{webhook}/deliveries/{delivery}/redeliver", None, [401, 404, 403, 403, 202, 202]),
    # Training jobs: viewers read, members create and operate their own ({job} is the owner's), admins all.
    ("GET", "/api/v1/training-jobs?workspace_id={ws}", None, [401, 404, 200, 200, 200, 200]),
    ("POST", "/api/v1/training-jobs", {"workspace_id": "{ws}", "name": "t", "command": ["true"]}, [401, 404, 403, 201, 201, 201]),
    ("GET", "/api/v1/training-jobs/{job}", None, [401, 404, 200, 200, 200, 200]),
    ("GET", "/api/v1/training-jobs/{job}/logs", None, [401, 404, 200, 200, 200, 200]),
    ("GET", "/api/v1/training-jobs/{job}/logs/a0.n0", None, [401, 404, 404, 404, 404, 404]),
    ("POST", "/api/v1/training-jobs/{job}/cancel", None, [401, 404, 403, 403, 200, 200]),
    # Inference services: the same rule ({service} is the owner's).
    ("GET", "/api/v1/inference-services?workspace_id={ws}", None, [401, 404, 200, 200, 200, 200]),
    ("POST", "/api/v1/inference-services", {"workspace_id": "{ws}", "name": "s"}, [401, 404, 403, 201, 201, 201]),
    ("GET", "/api/v1/inference-services/{service}", None, [401, 404, 200, 200, 200, 200]),
    ("PATCH", "/api/v1/inference-services/{service}", {"max_replicas": 2}, [401, 404, 403, 403, 200, 200]),
    ("POST", "/api/v1/inference-services/{service}/tokens", None, [401, 404, 403, 403, 201, 201]),
    ("DELETE", "/api/v1/inference-services/{service}", None, [401, 404, 403, 403, 204, 204]),
]

CASES = [
    pytest.param(method, path, body, caller, expected[i], id=f"{method} {path} as {caller}")
    for method, path, body, expected in MATRIX
    for i, caller in enumerate(CALLERS)
]


async def _world(client):
    owner = await signup(client)
    accounts = {
        "other": await signup(client),
        "viewer": await signup(client),
        "member": await signup(client),
        "ws_admin": await signup(client),
        "platform_admin": await signup(client, admin_container=client.server.app[_key()]),
    }
    target = await signup(client)
    newcomer = await signup(client)
    invitee = await signup(client)
    ws = (await (await client.post("/api/v1/workspaces", json={"name": "team"}, headers=owner.headers)).json())["id"]
    for role, who in (("viewer", "viewer"), ("member", "member"), ("admin", "ws_admin"), ("member", None)):
        await join_workspace(client, owner, ws, accounts[who] if who else target, role)
    r = await client.post(f"/api/v1/workspaces/{ws}/invitations", json={"username": invitee.username}, headers=owner.headers)
    assert r.status == 201, await r.text()
    invitation = (await r.json())["id"]
    r = await client.post("/api/v1/hosts", json={"name": "gpu-x"}, headers=accounts["platform_admin"].headers)
    assert r.status == 201, await r.text()
    host = (await r.json())["id"]
    await client.post("/api/v1/users/me/tokens", json={"name": "n"}, headers=target.headers)  # a notification of target's
    notification = (await (await client.get("/api/v1/notifications", headers=target.headers)).json())["items"][0]["id"]
    webhook, delivery = await seed_webhook(client.server.app[_key()], ws, owner.id)
    r = await client.post("/api/v1/training-jobs", json={"workspace_id": ws, "name": "owned", "command": ["true"]},
                          headers=owner.headers)
    assert r.status == 201, await r.text()
    job = (await r.json())["id"]
    r = await client.post("/api/v1/inference-services", json={"workspace_id": ws, "name": "owned"}, headers=owner.headers)
    assert r.status == 201, await r.text()
    service = (await r.json())["id"]
    return accounts, {"job": job, "service": service, "ws": ws, "target": target.id, "newcomer": newcomer.username, "invitation": invitation, "host": host,
                      "notification": notification, "webhook": webhook, "delivery": delivery}


def _key():
    from remotegpu.entrypoints.http.keys import CONTAINER

    return CONTAINER


def _fill(value, names):
    if isinstance(value, str):
        return value.format(**names)
    if isinstance(value, dict):
        return {k: _fill(v, names) for k, v in value.items()}
    return value


@pytest.mark.parametrize("method, path, body, caller, expected", CASES)
async def test_authorization_matrix(client, method, path, body, caller, expected):
    accounts, names = await _world(client)
    headers = {} if caller == "anonymous" else accounts[caller].headers
    r = await client.request(method, _fill(path, names), json=_fill(body, names) if body is not None else None, headers=headers)
    assert r.status == expected, await r.text()
    if expected >= 400:
        assert "error" in await r.json()
