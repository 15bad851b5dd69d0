from __future__ import annotations

from aiohttp import web

from remotegpu.application.workspaces.invitations import InvitationView
from remotegpu.application.shared.read_cache import Memo
from remotegpu.application.workspaces.service import QuotaView, UserQuotaView, WorkspaceView
from remotegpu.domain.workspaces.quota import Quota, UserQuota
from remotegpu.entrypoints.http.handlers import api
from remotegpu.entrypoints.http.routing import Call
from remotegpu.entrypoints.http.schemas.common import Page
from remotegpu.entrypoints.http.schemas.workspaces import (
    InvitationIn,
    InvitationOut,
    MemberIn,
    MemberOut,
    MemberPatchIn,
    QuotaIn,
    QuotaOut,
    UsageOut,
    UserQuotaIn,
    UserQuotaOut,
    WorkspaceIn,
    WorkspaceListQuery,
    WorkspaceOut,
)

TAGS = ["workspaces"]
WS = "/api/v1/workspaces/{workspace_id}"


def _ws(view: WorkspaceView) -> WorkspaceOut:
    w = view.workspace
    return WorkspaceOut(id=w.id, name=w.name, slug=w.slug, is_personal=w.is_personal, created_at=w.created_at, role=view.role)


def _quota(view: QuotaView) -> QuotaOut:
    return QuotaOut(**view.quota.__dict__, usage=UsageOut(**view.usage.__dict__), is_default=view.is_default)


def _user_quota(view: UserQuotaView) -> UserQuotaOut:
    return UserQuotaOut(
        user_id=view.user.id, username=view.user.username, **view.quota.resources.__dict__,
        max_workspaces=view.quota.max_workspaces, usage=UsageOut(**view.usage.__dict__),
        owned_workspaces=view.owned_workspaces, is_default=view.is_default,
    )


def _invitation(view: InvitationView) -> InvitationOut:
    i = view.invitation
    return InvitationOut(
        id=i.id, workspace_id=i.workspace_id, workspace_name=view.workspace.name, user_id=i.user_id,
        username=view.invitee.username, role=i.role, invited_by=view.inviter.username if view.inviter else None,
        status=i.status, created_at=i.created_at, expires_at=i.expires_at,
    )


def _member(m, u) -> MemberOut:
    return MemberOut(user_id=u.id, username=u.username, display_name=u.display_name, role=m.role, joined_at=m.created_at)


@api.get("/api/v1/workspaces", query=WorkspaceListQuery, response=Page[WorkspaceOut], tags=TAGS, errors=[401, 403, 422])
async def list_workspaces(call: Call) -> Page[WorkspaceOut] | web.Response:
    """Workspaces the caller belongs to, with the caller's role; all=true: every workspace (platform admins)."""
    q: WorkspaceListQuery = call.query
    svc = call.container.workspace_service()
    if q.all:
        views, total = await svc.list_all(call.user, search=q.search, limit=q.limit, offset=q.offset)
    else:
        # Shared per change epoch (WorkspaceService.list_mine): its document is written once.
        page = await svc.list_mine(call.user, limit=q.limit, offset=q.offset)
        return web.Response(body=_ws_pages.get(page, None, lambda: _ws_page(*page).model_dump_json().encode()),
                            content_type="application/json")
    return _ws_page(views, total)


def _ws_page(views: list[WorkspaceView], total: int) -> Page[WorkspaceOut]:
    return Page[WorkspaceOut](items=[_ws(v) for v in views], total=total)


_ws_pages = Memo(1024)


@api.post("/api/v1/workspaces", body=WorkspaceIn, response=WorkspaceOut, status=201, tags=TAGS, errors=[401, 422])
async def create_workspace(call: Call) -> WorkspaceOut:
    """Create a team workspace owned by the caller."""
    return _ws(await call.container.workspace_service().create(call.user, call.body.name))


@api.get(WS, response=WorkspaceOut, tags=TAGS, errors=[401, 404])
async def get_workspace(call: Call) -> WorkspaceOut:
    """One workspace (members and platform admins)."""
    return _ws(await call.container.workspace_service().get(call.user, call.path("workspace_id")))


@api.patch(WS, body=WorkspaceIn, response=WorkspaceOut, tags=TAGS, errors=[401, 403, 404, 422])
async def rename_workspace(call: Call) -> WorkspaceOut:
    """Rename (workspace admins and owners)."""
    return _ws(await call.container.workspace_service().rename(call.user, call.path("workspace_id"), call.body.name))


@api.delete(WS, status=204, tags=TAGS, errors=[401, 403, 404, 409])
async def delete_workspace(call: Call) -> None:
    """Delete a team workspace (owners); personal workspaces stay."""
    await call.container.workspace_service().delete(call.user, call.path("workspace_id"))


@api.get(WS + "/members", response=Page[MemberOut], tags=TAGS, errors=[401, 404])
async def list_members(call: Call) -> Page[MemberOut]:
    """Members and their roles."""
    rows = await call.container.workspace_service().list_members(call.user, call.path("workspace_id"))
    return Page[MemberOut](items=[_member(m, u) for m, u in rows], total=len(rows))


@api.post(WS + "/members", body=MemberIn, response=MemberOut, status=201, tags=TAGS, errors=[401, 403, 404, 409, 422])
async def add_member(call: Call) -> MemberOut:
    """Add a member directly, without their consent (platform admins; audited). Everyone else invites."""
    m, u = await call.container.workspace_service().add_member(
        call.user, call.path("workspace_id"), call.body.username, call.body.role
    )
    return _member(m, u)


@api.patch(WS + "/members/{user_id}", body=MemberPatchIn, response=MemberOut, tags=TAGS, errors=[401, 403, 404, 409, 422])
async def change_member_role(call: Call) -> MemberOut:
    """Change a member's role; the last owner cannot be demoted."""
    svc = call.container.workspace_service()
    await svc.change_role(call.user, call.path("workspace_id"), call.path("user_id"), call.body.role)
    rows = await svc.list_members(call.user, call.path("workspace_id"))
    return next(_member(m, u) for m, u in rows if u.id == call.path("user_id"))


@api.delete(WS + "/members/{user_id}", status=204, tags=TAGS, errors=[401, 403, 404, 409])
async def remove_member(call: Call) -> None:
    """Remove a member, or leave (your own user id); the last owner cannot leave."""
    await call.container.workspace_service().remove_member(call.user, call.path("workspace_id"), call.path("user_id"))


# --- invitations ------------------------------------------------------------------------


@api.post(WS + "/invitations", body=InvitationIn, response=InvitationOut, status=201, tags=TAGS, errors=[401, 403, 404, 409, 422])
async def invite_member(call: Call) -> InvitationOut:
    """Invite a user (by username or email) with a role; they become a member when they accept (owners and admins)."""
    b: InvitationIn = call.body
    view = await call.container.invitation_service().invite(
        call.user, call.path("workspace_id"), b.role, username=b.username, email=b.email
    )
    return _invitation(view)


@api.get(WS + "/invitations", response=Page[InvitationOut], tags=TAGS, errors=[401, 403, 404])
async def list_workspace_invitations(call: Call) -> Page[InvitationOut]:
    """Pending invitations of the workspace (owners and admins)."""
    views = await call.container.invitation_service().list_for_workspace(call.user, call.path("workspace_id"))
    return Page[InvitationOut](items=[_invitation(v) for v in views], total=len(views))


@api.delete(WS + "/invitations/{invitation_id}", status=204, tags=TAGS, errors=[401, 403, 404, 409])
async def revoke_invitation(call: Call) -> None:
    """Revoke a pending invitation (owners and admins)."""
    await call.container.invitation_service().revoke(call.user, call.path("workspace_id"), call.path("invitation_id"))


@api.get("/api/v1/users/me/invitations", response=Page[InvitationOut], tags=TAGS, errors=[401])
async def list_my_invitations(call: Call) -> Page[InvitationOut]:
    """Invitations waiting for the caller's answer."""
    views = await call.container.invitation_service().list_mine(call.user)
    return Page[InvitationOut](items=[_invitation(v) for v in views], total=len(views))


@api.post("/api/v1/users/me/invitations/{invitation_id}/accept", response=WorkspaceOut, tags=TAGS, errors=[401, 404, 409])
async def accept_invitation(call: Call) -> WorkspaceOut:
    """Accept: become a member of the workspace with the invited role."""
    return _ws(await call.container.invitation_service().accept(call.user, call.path("invitation_id")))


@api.post("/api/v1/users/me/invitations/{invitation_id}/decline", status=204, tags=TAGS, errors=[401, 404, 409])
async def decline_invitation(call: Call) -> None:
    """Decline: the invitation closes and nothing else changes."""
    await call.container.invitation_service().decline(call.user, call.path("invitation_id"))


# --- quotas -----------------------------------------------------------------------------


@api.get(WS + "/quota", response=QuotaOut, tags=TAGS, errors=[401, 404])
async def get_quota(call: Call) -> web.Response:
    """Limits and current usage (null limit = unlimited; is_default: the platform's default applies)."""
    view = await call.container.workspace_service().get_quota(call.user, call.path("workspace_id"))
    # Shared per change epoch (WorkspaceService.get_quota): its document is written once.
    return web.Response(body=_quota_docs.get(view, None, lambda: _quota(view).model_dump_json().encode()),
                        content_type="application/json")


_quota_docs = Memo(1024)


@api.put(WS + "/quota", body=QuotaIn, response=QuotaOut, tags=TAGS, errors=[401, 403, 404, 422])
async def set_quota(call: Call) -> QuotaOut:
    """Set the workspace's limits (platform admins)."""
    view = await call.container.workspace_service().set_quota(call.user, call.path("workspace_id"), Quota(**call.body.model_dump()))
    return _quota(view)


@api.delete(WS + "/quota", response=QuotaOut, tags=TAGS, errors=[401, 403, 404])
async def reset_workspace_quota(call: Call) -> QuotaOut:
    """Drop the workspace's own limits: the platform's default applies again (platform admins)."""
    return _quota(await call.container.workspace_service().reset_quota(call.user, call.path("workspace_id")))


@api.get("/api/v1/users/{user_id}/quota", response=UserQuotaOut, tags=TAGS, errors=[401, 403, 404])
async def get_user_quota(call: Call) -> UserQuotaOut:
    """A user's cap over all the workspaces they own, with what those hold now (the user themself — also as "me" — or platform admins)."""
    user_id = call.user.id if call.path("user_id") == "me" else call.path("user_id")
    return _user_quota(await call.container.workspace_service().get_user_quota(call.user, user_id))


@api.put("/api/v1/users/{user_id}/quota", body=UserQuotaIn, response=UserQuotaOut, tags=TAGS, errors=[401, 403, 404, 422])
async def set_user_quota(call: Call) -> UserQuotaOut:
    """Set a user's own cap (platform admins); null fields are unlimited."""
    b = call.body.model_dump()
    max_workspaces = b.pop("max_workspaces")
    quota = UserQuota(Quota(**b), max_workspaces=max_workspaces)
    return _user_quota(await call.container.workspace_service().set_user_quota(call.user, call.path("user_id"), quota))


@api.delete("/api/v1/users/{user_id}/quota", response=UserQuotaOut, tags=TAGS, errors=[401, 403, 404])
async def reset_user_quota(call: Call) -> UserQuotaOut:
    """Drop a user's own cap: the platform's default applies again (platform admins)."""
    return _user_quota(await call.container.workspace_service().set_user_quota(call.user, call.path("user_id"), None))
