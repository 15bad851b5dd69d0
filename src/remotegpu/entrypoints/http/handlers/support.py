"""Support tickets: /api/v1/tickets (requesters and staff), /api/v1/support/* (the team)."""

from __future__ import annotations

from aiohttp import web

from remotegpu.domain.shared.errors import InvalidInput
from remotegpu.domain.support import messages as _messages  # noqa: F401 - registers the ticket webhook event types
from remotegpu.domain.support.models import Attachment, Comment, Ticket, TicketStatus
from remotegpu.entrypoints.http.handlers import api
from remotegpu.entrypoints.http.routing import Call
from remotegpu.entrypoints.http.schemas.common import Page
from remotegpu.entrypoints.http.schemas.support import (
    AttachmentOut,
    AttachmentQuery,
    AgentOut,
    CommentIn,
    CommentOut,
    QueueQuery,
    SlaTargetOut,
    SupportMeOut,
    TicketDetailOut,
    TicketIn,
    TicketListQuery,
    TicketOut,
    TicketPatchIn,
)

TAGS = ["support"]
ONE = "/api/v1/tickets/{ticket_id}"


def _statuses(text: str | None) -> list[TicketStatus] | None:
    if not text:
        return None
    try:
        return [TicketStatus(s.strip()) for s in text.split(",") if s.strip()]
    except ValueError:
        raise InvalidInput(f"status must be among {', '.join(s.value for s in TicketStatus)}",
                           details={"field": "status"}) from None


def _fields(t: Ticket) -> dict:
    return dict(
        id=t.id, requester_id=t.requester_id, subject=t.subject, description=t.description, category=t.category,
        priority=t.priority, status=t.status, workspace_id=t.workspace_id, environment_id=t.environment_id,
        assignee_id=t.assignee_id, created_at=t.created_at, updated_at=t.updated_at, first_response_at=t.first_response_at,
        solved_at=t.solved_at, closed_at=t.closed_at,
        sla_breached=sorted(a.removesuffix(".breach") for a in t.sla_alerts if a.endswith(".breach")),
    )


def _out(t: Ticket) -> TicketOut:
    return TicketOut(**_fields(t))


async def _names(call: Call, ids: set[str]) -> dict[str, str]:
    names = {}
    async with call.container.plain_uow() as uow:
        for i in ids:
            user = await uow.users.get(i)
            names[i] = user.username if user else "?"
    return names


def _comment(c: Comment, names: dict[str, str]) -> CommentOut:
    return CommentOut(id=c.id, ticket_id=c.ticket_id, author_id=c.author_id, author=names.get(c.author_id, "?"), body=c.body,
                      internal=not c.public, by_staff=c.by_staff, created_at=c.created_at)


def _attachment(a: Attachment) -> AttachmentOut:
    return AttachmentOut(id=a.id, ticket_id=a.ticket_id, comment_id=a.comment_id, uploader_id=a.uploader_id, filename=a.filename,
                         content_type=a.content_type, size=a.size, sha256=a.sha256, internal=not a.public, created_at=a.created_at)


async def _detail(call: Call, ticket_id: str) -> TicketDetailOut:
    view = await call.container.ticket_service().get(call.user, ticket_id)
    t = view.ticket
    names = await _names(call, {t.requester_id, *([t.assignee_id] if t.assignee_id else []), *(c.author_id for c in view.comments)})
    return TicketDetailOut(
        **_fields(t), requester=names[t.requester_id], assignee=names.get(t.assignee_id) if t.assignee_id else None,
        comments=[_comment(c, names) for c in view.comments], attachments=[_attachment(a) for a in view.attachments],
        sla=[SlaTargetOut(name=s.name, target_seconds=s.target_seconds, elapsed_seconds=s.elapsed_seconds, done_at=s.done_at,
                          due_at=s.due_at, breached=s.breached, paused=s.paused) for s in view.sla],
        staff_view=view.staff, allowed_statuses=sorted(t.moves_for_agent(), key=lambda s: list(TicketStatus).index(s)) if view.staff else [],
    )


@api.post("/api/v1/tickets", body=TicketIn, response=TicketOut, status=201, tags=TAGS, errors=[401, 404, 422])
async def create_ticket(call: Call) -> TicketOut:
    """Open a support ticket (optionally about an environment you can see)."""
    b: TicketIn = call.body
    ticket = await call.container.ticket_service().create(
        call.user, subject=b.subject, description=b.description, category=b.category.value, priority=b.priority.value,
        environment_id=b.environment_id, workspace_id=b.workspace_id,
    )
    return _out(ticket)


@api.get("/api/v1/tickets", query=TicketListQuery, response=Page[TicketOut], tags=TAGS, errors=[401, 422])
async def list_tickets(call: Call) -> Page[TicketOut]:
    """Your own tickets, most recently updated first."""
    q: TicketListQuery = call.query
    items, total = await call.container.ticket_service().mine(call.user, statuses=_statuses(q.status), limit=q.limit, offset=q.offset)
    return Page[TicketOut](items=[_out(t) for t in items], total=total)


@api.get(ONE, response=TicketDetailOut, tags=TAGS, errors=[401, 404])
async def get_ticket(call: Call) -> TicketDetailOut:
    """A ticket with its conversation and SLA (internal notes for support staff only; others' tickets 404)."""
    return await _detail(call, call.path("ticket_id"))


@api.patch(ONE, body=TicketPatchIn, response=TicketDetailOut, tags=TAGS, errors=[401, 403, 404, 409, 422])
async def update_ticket(call: Call) -> TicketDetailOut:
    """Support staff: status, priority, category, assignee."""
    b: TicketPatchIn = call.body
    await call.container.ticket_service().update(
        call.user, call.path("ticket_id"), status=b.status.value if b.status else None,
        priority=b.priority.value if b.priority else None, category=b.category.value if b.category else None,
        assignee_id=b.assignee_id, unassign=b.unassign,
    )
    return await _detail(call, call.path("ticket_id"))


@api.post(ONE + "/comments", body=CommentIn, response=CommentOut, status=201, tags=TAGS, errors=[401, 403, 404, 409, 422])
async def add_ticket_comment(call: Call) -> CommentOut:
    """Reply (the requester or staff), or add an internal note (staff)."""
    b: CommentIn = call.body
    c = await call.container.ticket_service().reply(call.user, call.path("ticket_id"), b.body, internal=b.internal,
                                                    status=b.status.value if b.status else None)
    return _comment(c, {call.user.id: call.user.username})


@api.post(ONE + "/attachments", query=AttachmentQuery, response=AttachmentOut, status=201, tags=TAGS,
          errors=[401, 403, 404, 409, 422])
async def add_ticket_attachment(call: Call) -> AttachmentOut:
    """Attach a file: its bytes as the body (Content-Type application/octet-stream; its own type in `content_type`).

    To the ticket itself (its requester, e.g. right after creating it) or to one of your comments on it
    (a reply or, staff, an internal note: then the file is internal too). At most 10 MiB (configurable) and 20 files a ticket."""
    if call.request.content_type != "application/octet-stream":
        raise InvalidInput("send the file's bytes as application/octet-stream (its type goes in content_type)",
                           code="unsupported_media_type")
    q: AttachmentQuery = call.query
    a = await call.container.ticket_service().attach(
        call.user, call.path("ticket_id"), filename=q.filename, content_type=q.content_type, comment_id=q.comment_id,
        chunks=call.request.content.iter_chunked(256 * 1024), declared_size=call.request.content_length)
    return _attachment(a)


def _disposition(name: str) -> str:
    from urllib.parse import quote

    fallback = "".join(c if c.isascii() and (c.isalnum() or c in "._- ") else "_" for c in name) or "file"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


@api.get(ONE + "/attachments/{attachment_id}", response=None, tags=TAGS, errors=[401, 404])
async def download_ticket_attachment(call: Call) -> web.StreamResponse:
    """An attachment's bytes, for whoever sees the ticket (internal ones: support staff); always a download, never rendered."""
    a, chunks = await call.container.ticket_service().attachment(call.user, call.path("ticket_id"), call.path("attachment_id"))
    response = web.StreamResponse(headers={
        "Content-Type": a.content_type, "Content-Length": str(a.size), "Content-Disposition": _disposition(a.filename),
        "X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox", "Cache-Control": "private, no-store",
        "X-Checksum-Sha256": a.sha256,
    })
    await response.prepare(call.request)
    async for chunk in chunks:
        await response.write(chunk)
    await response.write_eof()
    return response


download_ticket_attachment.content_type = "application/octet-stream"  # type: ignore[attr-defined]  # documented as such


@api.post(ONE + "/solve", response=TicketOut, tags=TAGS, errors=[401, 404, 409])
async def solve_ticket(call: Call) -> TicketOut:
    """Mark solved (the requester: my problem is gone; it closes after the configured days)."""
    return _out(await call.container.ticket_service().solve(call.user, call.path("ticket_id")))


@api.post(ONE + "/reopen", response=TicketOut, tags=TAGS, errors=[401, 404, 409])
async def reopen_ticket(call: Call) -> TicketOut:
    """Reopen a solved ticket (a closed one cannot be: open a new ticket)."""
    return _out(await call.container.ticket_service().reopen(call.user, call.path("ticket_id")))


@api.get("/api/v1/support/me", response=SupportMeOut, tags=TAGS, errors=[401])
async def support_me(call: Call) -> SupportMeOut:
    """Whether you are on the support team, and the team's business hours."""
    service = call.container.ticket_service()
    return SupportMeOut(is_staff=await service.is_staff(call.user), business_hours=service.settings.sla.hours.describe())


@api.get("/api/v1/support/queue", query=QueueQuery, response=Page[TicketOut], tags=TAGS, errors=[401, 403, 422])
async def support_queue(call: Call) -> Page[TicketOut]:
    """Support staff: every ticket, filtered by status, assignee ('me', 'none') and priority."""
    q: QueueQuery = call.query
    items, total = await call.container.ticket_service().queue(
        call.user, statuses=_statuses(q.status), assignee=q.assignee, priority=q.priority.value if q.priority else None,
        limit=q.limit, offset=q.offset)
    return Page[TicketOut](items=[_out(t) for t in items], total=total)


@api.get("/api/v1/support/agents", response=Page[AgentOut], tags=TAGS, errors=[401, 403])
async def list_support_agents(call: Call) -> Page[AgentOut]:
    """Platform admins: the support team (platform admins belong to it anyway)."""
    users = await call.container.ticket_service().team(call.user)
    return Page[AgentOut](items=[AgentOut(id=u.id, username=u.username, display_name=u.display_name) for u in users], total=len(users))


@api.put("/api/v1/support/agents/{user_id}", response=AgentOut, tags=TAGS, errors=[401, 403, 404])
async def add_support_agent(call: Call) -> AgentOut:
    """Platform admins: give a user the support role."""
    u = await call.container.ticket_service().add_to_team(call.user, call.path("user_id"))
    return AgentOut(id=u.id, username=u.username, display_name=u.display_name)


@api.delete("/api/v1/support/agents/{user_id}", status=204, tags=TAGS, errors=[401, 403, 404])
async def remove_support_agent(call: Call) -> None:
    """Platform admins: take the support role away."""
    await call.container.ticket_service().remove_from_team(call.user, call.path("user_id"))
