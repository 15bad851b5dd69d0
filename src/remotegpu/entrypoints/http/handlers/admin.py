from __future__ import annotations

from remotegpu.entrypoints.http.handlers import api
from remotegpu.entrypoints.http.routing import Call
from remotegpu.entrypoints.http.schemas.common import Page
from remotegpu.entrypoints.http.schemas.identity import (
    AuditEventOut,
    AuditQuery,
    InviteIn,
    InviteOut,
    SignOutIn,
    UserListQuery,
    UserOut,
    UserPatchIn,
)

TAGS = ["admin"]


@api.get("/api/v1/users", query=UserListQuery, response=Page[UserOut], tags=TAGS, errors=[401, 403, 422])
async def list_users(call: Call) -> Page[UserOut]:
    """List and search users (platform admins)."""
    q: UserListQuery = call.query
    users, total = await call.container.admin_service().list_users(call.user, search=q.search, limit=q.limit, offset=q.offset)
    return Page[UserOut](items=[UserOut.model_validate(u, from_attributes=True) for u in users], total=total)


@api.get("/api/v1/users/{user_id}", response=UserOut, tags=TAGS, errors=[401, 403, 404])
async def get_user(call: Call) -> UserOut:
    """One user (platform admins)."""
    user = await call.container.admin_service().get_user(call.user, call.path("user_id"))
    return UserOut.model_validate(user, from_attributes=True)


@api.patch("/api/v1/users/{user_id}", body=UserPatchIn, response=UserOut, tags=TAGS, errors=[401, 403, 404, 409, 422])
async def update_user(call: Call) -> UserOut:
    """Disable/enable a user or promote/demote an admin (platform admins)."""
    user = await call.container.admin_service().update_user(
        call.user, call.path("user_id"), is_active=call.body.is_active, is_admin=call.body.is_admin, ip=call.ip
    )
    return UserOut.model_validate(user, from_attributes=True)


@api.post("/api/v1/users/{user_id}/sign-out", body=SignOutIn, status=204, tags=TAGS, errors=[401, 403, 404, 422])
async def sign_out_user(call: Call) -> None:
    """Sign a user out everywhere: their access and refresh tokens stop working at once (platform admins)."""
    await call.container.admin_service().sign_out_everywhere(
        call.user, call.path("user_id"), revoke_api_tokens=call.body.revoke_api_tokens, ip=call.ip
    )


@api.post("/api/v1/invites", body=InviteIn, response=InviteOut, status=201, tags=TAGS, errors=[401, 403, 422])
async def create_invite(call: Call) -> InviteOut:
    """Create a one-time registration invite code (platform admins)."""
    invite, code = await call.container.admin_service().create_invite(call.user, valid_days=call.body.valid_days)
    return InviteOut(id=invite.id, code=code, expires_at=invite.expires_at)


@api.get("/api/v1/audit-events", query=AuditQuery, response=Page[AuditEventOut], tags=TAGS, errors=[401, 403, 422])
async def list_audit_events(call: Call) -> Page[AuditEventOut]:
    """Security audit log, newest first (platform admins)."""
    q: AuditQuery = call.query
    events, total = await call.container.admin_service().list_audit(
        call.user, action=q.action, actor_id=q.actor_id, limit=q.limit, offset=q.offset
    )
    return Page[AuditEventOut](items=[AuditEventOut.model_validate(e, from_attributes=True) for e in events], total=total)
