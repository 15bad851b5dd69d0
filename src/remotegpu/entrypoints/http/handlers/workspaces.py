from __future__ import annotations

from remotegpu.application.workspaces.service import QuotaView, WorkspaceView
from remotegpu.domain.workspaces.quota import Quota
from remotegpu.entrypoints.http.handlers import api
from remotegpu.entrypoints.http.routing import Call
from remotegpu.entrypoints.http.schemas.common import Page
from remotegpu.entrypoints.http.schemas.workspaces import (
    MemberIn,
    MemberOut,
    MemberPatchIn,
    QuotaIn,
    QuotaOut,
    UsageOut,
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
    return QuotaOut(**view.quota.__dict__, usage=UsageOut(**view.usage.__dict__))


def _member(m, u) -> MemberOut:
    return MemberOut(user_id=u.id, username=u.username, display_name=u.display_name, role=m.role, joined_at=m.created_at)


@api.get("/api/v1/workspaces", query=WorkspaceListQuery, response=Page[WorkspaceOut], tags=TAGS, errors=[401, 403, 422])
async def list_workspaces(call: Call) -> Page[WorkspaceOut]:
    """Workspaces the caller belongs to, with the caller's role; all=true: every workspace (platform admins)."""
    q: WorkspaceListQuery = call.query
    svc = call.container.workspace_service()
    if q.all:
        views, total = await svc.list_all(call.user, search=q.search, limit=q.limit, offset=q.offset)
    else:
        views, total = await svc.list_mine(call.user, limit=q.limit, offset=q.offset)
    return Page[WorkspaceOut](items=[_ws(v) for v in views], total=total)


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
    """Invite an existing user by username with a role."""
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


@api.get(WS + "/quota", response=QuotaOut, tags=TAGS, errors=[401, 404])
async def get_quota(call: Call) -> QuotaOut:
    """Limits and current usage (null limit = unlimited)."""
    return _quota(await call.container.workspace_service().get_quota(call.user, call.path("workspace_id")))


@api.put(WS + "/quota", body=QuotaIn, response=QuotaOut, tags=TAGS, errors=[401, 403, 404, 422])
async def set_quota(call: Call) -> QuotaOut:
    """Set the workspace's limits (platform admins)."""
    view = await call.container.workspace_service().set_quota(call.user, call.path("workspace_id"), Quota(**call.body.model_dump()))
    return _quota(view)
