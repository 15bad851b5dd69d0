"""Every endpoint × every kind of caller → the expected status.

Callers: anonymous, a user of another tenant, and workspace viewer / member / admin,
and a platform admin who is not a member. A workspace you are not in answers 404.
"""

from __future__ import annotations

import hashlib

import pytest

from tests.conftest import signup
from tests.support.storage import seed_dataset
from tests.support.images import seed_images
from tests.support.webhooks import seed_webhook
from tests.support.billing import seed_plan
from tests.support.workspaces import join_workspace

CALLERS = ["anonymous", "other", "viewer", "member", "ws_admin", "platform_admin"]

# (method, path template, body, expected statuses in CALLERS order)
MATRIX = [
    ("GET", "/api/v1/workspaces/{ws}", None, [401, 404, 200, 200, 200, 200]),
    ("GET", "/api/v1/auth/providers", None, [200, 200, 200, 200, 200, 200]),  # the login page reads it
    # Single sign-on is not configured in the matrix's app: nothing to start or finish.
    ("GET", "/api/v1/auth/oidc/start", None, [404, 404, 404, 404, 404, 404]),
    ("GET", "/api/v1/auth/oidc/logout", None, [404, 404, 404, 404, 404, 404]),
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
    # The SSH gateway's audit record: a workspace's for its admins, everyone's for platform admins.
    ("GET", "/api/v1/ssh-sessions", None, [401, 403, 403, 403, 403, 200]),
    ("GET", "/api/v1/ssh-sessions?workspace_id={ws}", None, [401, 404, 403, 403, 200, 200]),
    ("GET", "/api/v1/workspaces/{ws}/ssh-sessions", None, [401, 404, 403, 403, 200, 200]),
    # Recordings are the platform admins' (404 for everyone else; none exists for this made-up session).
    ("GET", "/api/v1/ssh-sessions/00000000-0000-4000-8000-000000000000/recording", None, [401, 404, 404, 404, 404, 404]),
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
    # Datasets and models: viewers read, members write; {dataset} is private to {ws}.
    ("GET", "/api/v1/datasets?workspace_id={ws}", None, [401, 404, 200, 200, 200, 200]),
    ("POST", "/api/v1/datasets", {"workspace_id": "{ws}", "name": "fresh"}, [401, 404, 403, 201, 201, 201]),
    ("GET", "/api/v1/datasets/{dataset}", None, [401, 404, 200, 200, 200, 200]),
    ("PATCH", "/api/v1/datasets/{dataset}", {"description": "d"}, [401, 404, 403, 200, 200, 200]),
    ("DELETE", "/api/v1/datasets/{dataset}", None, [401, 404, 403, 204, 204, 204]),
    ("GET", "/api/v1/datasets/{dataset}/versions", None, [401, 404, 200, 200, 200, 200]),
    ("GET", "/api/v1/datasets/{dataset}/versions/latest", None, [401, 404, 200, 200, 200, 200]),
    ("DELETE", "/api/v1/datasets/{dataset}/versions/1", None, [401, 404, 403, 204, 204, 204]),
    ("GET", "/api/v1/datasets/{dataset}/diff?from=stable&to=1", None, [401, 404, 200, 200, 200, 200]),
    ("PUT", "/api/v1/datasets/{dataset}/tags/best", {"version": "1"}, [401, 404, 403, 200, 200, 200]),
    ("DELETE", "/api/v1/datasets/{dataset}/tags/stable", None, [401, 404, 403, 204, 204, 204]),
    ("POST", "/api/v1/datasets/{dataset}/uploads", {"files": [{"path": "n", "size": 1, "sha256": "c" * 64}]},
     [401, 404, 403, 201, 201, 201]),
    ("GET", "/api/v1/datasets/{dataset}/versions/1/file?path=a.txt", None, [401, 404, 200, 200, 200, 200]),
    ("GET", "/api/v1/datasets/{dataset}/versions/1/file-url?path=a.txt", None, [401, 404, 200, 200, 200, 200]),
    ("POST", "/api/v1/datasets/{dataset}/versions/1/file-urls", {"paths": ["a.txt"]}, [401, 404, 200, 200, 200, 200]),
    ("GET", "/api/v1/datasets/{dataset}/versions/1/archive", None, [401, 404, 200, 200, 200, 200]),
    ("GET", "/api/v1/models?workspace_id={ws}", None, [401, 404, 200, 200, 200, 200]),
    ("POST", "/api/v1/models", {"workspace_id": "{ws}", "name": "m", "model": {"framework": "pytorch"}}, [401, 404, 403, 201, 201, 201]),
    ("GET", "/api/v1/models/{dataset}", None, [401, 404, 404, 404, 404, 404]),  # a dataset is no model
    # {upload} is an open upload of {dataset}: members (and platform admins) carry it on.
    ("GET", "/api/v1/uploads/{upload}", None, [401, 404, 403, 200, 200, 200]),
    ("POST", "/api/v1/uploads/{upload}/files/{sha_b}/part-urls", {"numbers": [1]}, [401, 404, 403, 200, 200, 200]),
    ("PUT", "/api/v1/uploads/{upload}/files/{sha_b}/parts/1", "bb", [401, 404, 403, 422, 422, 422]),  # 4 bytes, not 3
    ("POST", "/api/v1/uploads/{upload}/files?sha256={sha_b}", "bb", [401, 404, 403, 422, 422, 422]),  # idem
    ("POST", "/api/v1/uploads/{upload}/files/{sha_b}/complete", {}, [401, 404, 403, 409, 409, 409]),  # parts missing
    ("POST", "/api/v1/uploads/{upload}/commit", None, [401, 404, 403, 409, 409, 409]),  # not verified yet
    ("DELETE", "/api/v1/uploads/{upload}", None, [401, 404, 403, 204, 204, 204]),
    ("GET", "/api/v1/storage/usage?workspace_id={ws}", None, [401, 404, 200, 200, 200, 200]),
    ("GET", "/api/v1/workspaces/{ws}/shared-disk", None, [401, 404, 200, 200, 200, 200]),
    ("PUT", "/api/v1/workspaces/{ws}/shared-disk", {"size_gib": 5}, [401, 404, 403, 403, 200, 200]),
    ("DELETE", "/api/v1/workspaces/{ws}/shared-disk", None, [401, 404, 403, 403, 204, 204]),
    ("POST", "/api/v1/storage/collect", None, [401, 403, 403, 403, 403, 200]),
    # Agents' reads of mounted versions take an agent token: no user's token opens them.
    ("GET", "/api/v1/agent/storage/{dataset}/versions/1", None, [401, 401, 401, 401, 401, 401]),
    ("GET", "/api/v1/agent/storage/{dataset}/blobs/{sha_b}", None, [401, 401, 401, 401, 401, 401]),
    ("POST", "/api/v1/webhooks/{webhook}/replay", {"since": "2020-01-01T00:00:00Z", "until": "2030-01-01T00:00:00Z"},
     [401, 404, 403, 403, 202, 202]),
    # Tickets are their requester's (here: the target user's, about the workspace) and the support
    # team's (platform admins): workspace roles give no access, anyone else gets 404.
    ("POST", "/api/v1/tickets", {"subject": "s", "description": "d"}, [401, 201, 201, 201, 201, 201]),
    ("POST", "/api/v1/tickets", {"subject": "s", "description": "d", "workspace_id": "{ws}"}, [401, 404, 201, 201, 201, 201]),
    ("GET", "/api/v1/tickets", None, [401, 200, 200, 200, 200, 200]),
    ("GET", "/api/v1/tickets/{ticket}", None, [401, 404, 404, 404, 404, 200]),
    ("PATCH", "/api/v1/tickets/{ticket}", {"priority": "high"}, [401, 404, 404, 404, 404, 200]),
    ("POST", "/api/v1/tickets/{ticket}/comments", {"body": "b"}, [401, 404, 404, 404, 404, 201]),
    ("POST", "/api/v1/tickets/{ticket}/attachments?filename=a.txt&content_type=text/plain", b"hello",
     [401, 404, 404, 404, 404, 403]),  # staff attach files to their replies (?comment_id=), not to the ticket
    ("GET", "/api/v1/tickets/{ticket}/attachments/{attachment}", None, [401, 404, 404, 404, 404, 200]),
    ("POST", "/api/v1/tickets/{ticket}/solve", None, [401, 404, 404, 404, 404, 200]),
    ("POST", "/api/v1/tickets/{ticket}/reopen", None, [401, 404, 404, 404, 404, 409]),
    ("GET", "/api/v1/support/me", None, [401, 200, 200, 200, 200, 200]),
    ("GET", "/api/v1/support/queue", None, [401, 403, 403, 403, 403, 200]),
    ("GET", "/api/v1/support/agents", None, [401, 403, 403, 403, 403, 200]),
    ("PUT", "/api/v1/support/agents/{target}", None, [401, 403, 403, 403, 403, 200]),
    ("DELETE", "/api/v1/support/agents/{target}", None, [401, 403, 403, 403, 403, 404]),
    # A phone number is the signed-in user's own (no SMS provider here: 409 sms_not_configured).
    ("GET", "/api/v1/users/me/phone", None, [401, 200, 200, 200, 200, 200]),
    ("PUT", "/api/v1/users/me/phone", {"number": "+8613800138000"}, [401, 409, 409, 409, 409, 409]),
    ("POST", "/api/v1/users/me/phone/verify", {"code": "123456"}, [401, 409, 409, 409, 409, 409]),
    ("DELETE", "/api/v1/users/me/phone", None, [401, 204, 204, 204, 204, 204]),
    # Billing: prices are public to users, set by platform admins; a workspace's wallet, usage and
    # bills are read by its viewers, its settings by its admins; money is booked by platform admins.
    ("GET", "/api/v1/billing/prices", None, [401, 200, 200, 200, 200, 200]),
    ("POST", "/api/v1/billing/prices", {"kind": "cpu", "unit_price": 5}, [401, 403, 403, 403, 403, 201]),
    ("GET", "/api/v1/billing/estimate?gpu_count=0&cpu_cores=2&memory_gib=4", None, [401, 200, 200, 200, 200, 200]),
    ("GET", "/api/v1/billing/wallet?workspace_id={ws}", None, [401, 404, 200, 200, 200, 200]),
    ("PATCH", "/api/v1/billing/wallet", {"workspace_id": "{ws}", "warn_below": 500}, [401, 404, 403, 403, 200, 200]),
    ("GET", "/api/v1/billing/wallet/entries?workspace_id={ws}", None, [401, 404, 200, 200, 200, 200]),
    ("POST", "/api/v1/billing/wallet/entries", {"workspace_id": "{ws}", "kind": "topup", "amount": 1000, "reason": "transfer"},
     [401, 404, 403, 403, 403, 201]),
    ("GET", "/api/v1/billing/usage?workspace_id={ws}&group_by=gpu_model", None, [401, 404, 200, 200, 200, 200]),
    ("GET", "/api/v1/billing/bills?workspace_id={ws}", None, [401, 404, 200, 200, 200, 200]),
    ("GET", "/api/v1/billing/bills/2026-11?workspace_id={ws}", None, [401, 404, 200, 200, 200, 200]),
    ("GET", "/api/v1/billing/bills/2026-11/csv?workspace_id={ws}", None, [401, 404, 200, 200, 200, 200]),
    # Plans: viewers read; workspace admins buy (no plan price here: 422), renew (no money: 409), cancel.
    ("GET", "/api/v1/billing/plans?workspace_id={ws}", None, [401, 404, 200, 200, 200, 200]),
    ("POST", "/api/v1/billing/plans", {"workspace_id": "{ws}", "gpu_model": "NVIDIA A100-SXM4-80GB", "gpu_count": 1, "term": "month"},
     [401, 404, 403, 403, 422, 422]),
    ("PATCH", "/api/v1/billing/plans/{plan}", {"auto_renew": True}, [401, 404, 403, 403, 200, 200]),
    ("POST", "/api/v1/billing/plans/{plan}/renew", None, [401, 404, 403, 403, 409, 409]),
    ("POST", "/api/v1/billing/plans/{plan}/cancel", None, [401, 404, 403, 403, 200, 200]),
    # Monitoring: a workspace's metrics, rules, alerts and silences for its members (viewers read,
    # members write); hosts, the fleet and platform rules for platform admins; agents' batches: agent tokens only.
    ("GET", "/api/v1/metrics/catalog", None, [401, 200, 200, 200, 200, 200]),
    ("GET", "/api/v1/metrics?scope=workspace&id={ws}", None, [401, 404, 200, 200, 200, 200]),
    ("GET", "/api/v1/metrics/history?scope=workspace&id={ws}&metric=DCGM_FI_DEV_GPU_UTIL", None, [401, 404, 200, 200, 200, 200]),
    ("GET", "/api/v1/metrics?scope=fleet", None, [401, 403, 403, 403, 403, 200]),
    ("GET", "/api/v1/metrics?scope=host&id={host}", None, [401, 403, 403, 403, 403, 200]),
    ("POST", "/api/v1/agent/metrics", {"samples": []}, [401, 401, 401, 401, 401, 401]),
    ("GET", "/api/v1/alert-rules?workspace_id={ws}", None, [401, 404, 200, 200, 200, 200]),
    ("POST", "/api/v1/alert-rules", {"name": "hot", "workspace_id": "{ws}", "type": "gpu_overheat"}, [401, 404, 403, 201, 201, 201]),
    ("GET", "/api/v1/alert-rules/{rule}", None, [401, 404, 200, 200, 200, 200]),
    ("PATCH", "/api/v1/alert-rules/{rule}", {"threshold": 80}, [401, 404, 403, 200, 200, 200]),
    ("DELETE", "/api/v1/alert-rules/{rule}", None, [401, 404, 403, 204, 204, 204]),
    ("GET", "/api/v1/alert-rules", None, [401, 403, 403, 403, 403, 200]),
    ("POST", "/api/v1/alert-rules", {"name": "down", "type": "host_offline"}, [401, 403, 403, 403, 403, 201]),
    ("GET", "/api/v1/alerts?workspace_id={ws}", None, [401, 404, 200, 200, 200, 200]),
    ("GET", "/api/v1/alerts", None, [401, 403, 403, 403, 403, 200]),
    ("GET", "/api/v1/alert-silences?workspace_id={ws}", None, [401, 404, 200, 200, 200, 200]),
    ("POST", "/api/v1/alert-silences", {"workspace_id": "{ws}", "ends_at": "2099-01-01T00:00:00Z"}, [401, 404, 403, 201, 201, 201]),
    ("DELETE", "/api/v1/alert-silences/{silence}", None, [401, 404, 403, 204, 204, 204]),
    # Images: platform images for everyone, a workspace's for its members (404 outside);
    # platform admins publish; the maker or workspace admins change and delete workspace images.
    ("GET", "/api/v1/images", None, [401, 200, 200, 200, 200, 200]),
    ("GET", "/api/v1/images?workspace_id={ws}", None, [401, 404, 200, 200, 200, 200]),
    ("POST", "/api/v1/images", {"name": "tools", "tag": "1", "reference": "registry.test/tools:1"}, [401, 403, 403, 403, 403, 201]),
    ("GET", "/api/v1/images/{image}", None, [401, 404, 200, 200, 200, 200]),
    ("PATCH", "/api/v1/images/{image}", {"description": "d"}, [401, 404, 403, 403, 200, 200]),
    ("GET", "/api/v1/images/{image}/jobs", None, [401, 404, 200, 200, 200, 200]),
    ("GET", "/api/v1/images/{platform_image}", None, [401, 200, 200, 200, 200, 200]),
    ("PATCH", "/api/v1/images/{platform_image}", {"description": "d"}, [401, 403, 403, 403, 403, 200]),
    ("DELETE", "/api/v1/images/{platform_image}", None, [401, 403, 403, 403, 403, 204]),
    ("GET", "/api/v1/image-jobs/{image_job}", None, [401, 404, 200, 200, 200, 200]),
    ("POST", "/api/v1/image-jobs/{image_job}/cancel", None, [401, 404, 403, 403, 200, 200]),
    # The job is running: the image cannot go before it is cancelled.
    ("DELETE", "/api/v1/images/{image}", None, [401, 404, 403, 403, 409, 409]),
    # Operating the environment is needed; then: no registry configured here (409).
    ("POST", "/api/v1/environments/{env}/save-image", {"name": "saved"}, [401, 404, 403, 403, 409, 409]),
    ("POST", "/api/v1/images/builds", {"workspace_id": "{ws}", "name": "b", "dockerfile": "FROM remotegpu/base:latest"},
     [401, 404, 403, 409, 409, 409]),
    # The registry's token realm: hosts' registry credentials only (HTTP Basic); no user, admin or not, gets a token.
    ("GET", "/api/v1/registry/token?service=remotegpu-registry&scope=repository:remotegpu/platform/base:pull", None,
     [401, 401, 401, 401, 401, 401]),
    # Training jobs: viewers read, members create and operate their own ({job} is the owner's), admins all.
    ("GET", "/api/v1/training-jobs?workspace_id={ws}", None, [401, 404, 200, 200, 200, 200]),
    ("POST", "/api/v1/training-jobs", {"workspace_id": "{ws}", "name": "t", "command": ["true"]}, [401, 404, 403, 201, 201, 201]),
    ("GET", "/api/v1/training-jobs/{job}", None, [401, 404, 200, 200, 200, 200]),
    ("GET", "/api/v1/training-jobs/{job}/logs", None, [401, 404, 200, 200, 200, 200]),
    ("GET", "/api/v1/training-jobs/{job}/logs/a0.n0", None, [401, 404, 404, 404, 404, 404]),
    ("POST", "/api/v1/training-jobs/{job}/cancel", None, [401, 404, 403, 403, 200, 200]),
    # A job's output: a dataset/model of the job's workspace (another tenant's: 404); agents send it.
    ("POST", "/api/v1/training-jobs", {"workspace_id": "{ws}", "name": "o", "command": ["true"],
                                       "output": {"kind": "dataset", "name": "{dataset}"}}, [401, 404, 403, 201, 201, 201]),
    ("POST", "/api/v1/agent/job-outputs/{job}.a0.n0", {"error": "none"}, [401, 401, 401, 401, 401, 401]),
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


def _needs(*templates) -> set[str]:
    """The placeholders a row names in its path and body: only those are seeded, since
    seeding every context for each of the matrix's rows took most of its run time."""
    import string

    found: set[str] = set()
    for template in templates:
        if isinstance(template, dict):
            found |= _needs(*template.values())
        elif isinstance(template, str):
            found |= {name for _, name, _, _ in string.Formatter().parse(template) if name}
    return found


async def _world(client, needs: set[str]):
    owner = await signup(client)
    accounts = {
        "other": await signup(client),
        "viewer": await signup(client),
        "member": await signup(client),
        "ws_admin": await signup(client),
        "platform_admin": await signup(client, admin_container=client.server.app[_key()]),
    }
    container = client.server.app[_key()]
    ws = (await (await client.post("/api/v1/workspaces", json={"name": "team"}, headers=owner.headers)).json())["id"]
    for role, who in (("viewer", "viewer"), ("member", "member"), ("admin", "ws_admin")):
        await join_workspace(client, owner, ws, accounts[who], role)
    names: dict = {"ws": ws, "env": None}
    if needs & {"target", "notification", "ticket", "attachment"}:
        target = await signup(client)
        await join_workspace(client, owner, ws, target, "member")
        names["target"] = target.id
    if "newcomer" in needs:
        names["newcomer"] = (await signup(client)).username
    if "invitation" in needs:
        invitee = await signup(client)
        r = await client.post(f"/api/v1/workspaces/{ws}/invitations", json={"username": invitee.username}, headers=owner.headers)
        assert r.status == 201, await r.text()
        names["invitation"] = (await r.json())["id"]
    if "host" in needs:
        r = await client.post("/api/v1/hosts", json={"name": "gpu-x"}, headers=accounts["platform_admin"].headers)
        assert r.status == 201, await r.text()
        names["host"] = (await r.json())["id"]
    if "notification" in needs:
        await client.post("/api/v1/users/me/tokens", json={"name": "n"}, headers=target.headers)  # a notification of target's
        names["notification"] = (await (await client.get("/api/v1/notifications", headers=target.headers)).json())["items"][0]["id"]
    if needs & {"webhook", "delivery"}:
        names["webhook"], names["delivery"] = await seed_webhook(container, ws, owner.id)
    if needs & {"dataset", "upload", "sha_b"}:
        names["dataset"], names["upload"] = await seed_dataset(container, ws, owner.id)
        names["sha_b"] = hashlib.sha256(b"bbb").hexdigest()
    if needs & {"ticket", "attachment"}:
        r = await client.post("/api/v1/tickets", json={"subject": "help", "description": "d", "workspace_id": ws},
                              headers=target.headers)
        assert r.status == 201, await r.text()
        names["ticket"] = (await r.json())["id"]
    if "attachment" in needs:
        r = await client.post(f"/api/v1/tickets/{names['ticket']}/attachments", params={"filename": "s.png", "content_type": "image/png"},
                              data=b"\x89PNG", headers={**target.headers, "Content-Type": "application/octet-stream"})
        assert r.status == 201, await r.text()
        names["attachment"] = (await r.json())["id"]
    if "plan" in needs:
        names["plan"] = await seed_plan(container, ws, owner.id)
    if "rule" in needs:
        r = await client.post("/api/v1/alert-rules", json={"name": "busy", "workspace_id": ws, "metric": "DCGM_FI_DEV_GPU_UTIL",
                                                           "op": ">", "threshold": 90}, headers=owner.headers)
        assert r.status == 201, await r.text()
        names["rule"] = (await r.json())["id"]
    if "silence" in needs:
        r = await client.post("/api/v1/alert-silences", json={"workspace_id": ws, "ends_at": "2099-01-01T00:00:00Z"},
                              headers=owner.headers)
        assert r.status == 201, await r.text()
        names["silence"] = (await r.json())["id"]
    if needs & {"image", "image_job", "platform_image"}:
        names["image"], names["image_job"], names["platform_image"] = await seed_images(container, ws, owner.id)
    if "job" in needs:
        r = await client.post("/api/v1/training-jobs", json={"workspace_id": ws, "name": "owned", "command": ["true"]},
                              headers=owner.headers)
        assert r.status == 201, await r.text()
        names["job"] = (await r.json())["id"]
    if "service" in needs:
        r = await client.post("/api/v1/inference-services", json={"workspace_id": ws, "name": "owned"}, headers=owner.headers)
        assert r.status == 201, await r.text()
        names["service"] = (await r.json())["id"]
    if "env" in needs:  # only where a row needs one: a workspace with an environment cannot be deleted
        r = await client.post("/api/v1/environments", json={"name": "env1", "workspace_id": ws}, headers=owner.headers)
        assert r.status == 202, await r.text()
        names["env"] = (await r.json())["id"]
    return accounts, names


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
    accounts, names = await _world(client, _needs(path, body))
    headers = {} if caller == "anonymous" else accounts[caller].headers
    if isinstance(body, bytes):  # a raw upload
        r = await client.request(method, _fill(path, names), data=body, headers={**headers, "Content-Type": "application/octet-stream"})
    else:
        r = await client.request(method, _fill(path, names), json=_fill(body, names) if body is not None else None, headers=headers)
    assert r.status == expected, await r.text()
    if expected >= 400:
        assert "error" in await r.json()
