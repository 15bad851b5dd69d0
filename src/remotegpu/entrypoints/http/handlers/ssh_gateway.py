"""The SSH gateway's audit record: who entered which environment, when, from where, how long."""

from __future__ import annotations

from aiohttp import web

from remotegpu.entrypoints.http.handlers import api
from remotegpu.entrypoints.http.routing import Call
from remotegpu.entrypoints.http.schemas.common import Page
from remotegpu.entrypoints.http.schemas.ssh_gateway import AllSshSessionQuery, SshSessionOut, SshSessionQuery

TAGS = ["ssh-gateway"]


def _out(s) -> SshSessionOut:
    return SshSessionOut(
        id=s.id, user_id=s.user_id, username=s.username, environment_id=s.environment_id,
        environment_name=s.environment_name, workspace_id=s.workspace_id, kind=s.kind, client_address=s.client_address,
        key_fingerprint=s.key_fingerprint, started_at=s.started_at, ended_at=s.ended_at,
        duration_seconds=s.duration_seconds, end_reason=s.end_reason, channels=s.channels,
        recorded=bool(s.recording),
    )


@api.get("/api/v1/ssh-sessions", query=AllSshSessionQuery, response=Page[SshSessionOut], tags=TAGS,
         errors=[401, 403, 404, 422])
async def list_ssh_sessions(call: Call) -> Page[SshSessionOut]:
    """Every stay in an environment through the SSH gateway, newest first (platform admins; with
    ``workspace_id``, that workspace's admins too, as ``/workspaces/{id}/ssh-sessions``)."""
    q: AllSshSessionQuery = call.query
    items, total = await call.container.ssh_gateway_access().list_sessions(
        call.user, workspace_id=q.workspace_id, environment_id=q.environment_id, user_id=q.user_id,
        limit=q.limit, offset=q.offset,
    )
    return Page[SshSessionOut](items=[_out(s) for s in items], total=total)


@api.get("/api/v1/ssh-sessions/{session_id}/recording", response=None, tags=TAGS, errors=[401, 404])
async def get_ssh_session_recording(call: Call) -> web.StreamResponse:
    """The session's terminal recording, an asciicast v2 file (``application/x-asciicast``):
    platform admins only (404 for everyone else, and for a session that was not recorded —
    ``REMOTEGPU_SSH_GATEWAY_RECORD`` off, or no terminal in it)."""
    session, chunks = await call.container.ssh_gateway_access().recording(call.user, call.path("session_id"))
    response = web.StreamResponse(headers={
        "Content-Type": "application/x-asciicast", "Cache-Control": "no-store",
        "Content-Disposition": f'attachment; filename="{session.id}.cast"',
    })
    await response.prepare(call.request)
    async for chunk in chunks:
        await response.write(chunk)
    await response.write_eof()
    return response


get_ssh_session_recording.content_type = "application/x-asciicast"  # type: ignore[attr-defined]  # (openapi.py)


@api.get("/api/v1/workspaces/{workspace_id}/ssh-sessions", query=SshSessionQuery, response=Page[SshSessionOut],
         tags=TAGS, errors=[401, 403, 404, 422])
async def list_workspace_ssh_sessions(call: Call) -> Page[SshSessionOut]:
    """A workspace's stays in its environments through the SSH gateway, newest first (its admins and owners)."""
    q: SshSessionQuery = call.query
    items, total = await call.container.ssh_gateway_access().list_sessions(
        call.user, workspace_id=call.path("workspace_id"), environment_id=q.environment_id, user_id=q.user_id,
        limit=q.limit, offset=q.offset,
    )
    return Page[SshSessionOut](items=[_out(s) for s in items], total=total)
