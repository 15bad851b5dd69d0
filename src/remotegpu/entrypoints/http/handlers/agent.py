"""Agent endpoints: authenticated by the host's join token / agent token, never a user's."""

from __future__ import annotations

from aiohttp import web

from remotegpu.adapters.fleet.wire import report_from_dict, reply_to_dict
from remotegpu.domain.shared.errors import InvalidInput, Unauthenticated
from remotegpu.entrypoints.http.handlers import api
from remotegpu.entrypoints.http.routing import Call
from remotegpu.entrypoints.http.schemas.environments import (
    AgentRegisteredOut,
    AgentRegisterIn,
    AgentReplyOut,
    AgentReportIn,
    AgentWaitIn,
    AgentWaitOut,
)

TAGS = ["agent"]


def _report(data: dict):
    try:
        return report_from_dict(data)
    except (ValueError, TypeError, KeyError) as exc:
        raise InvalidInput(f"bad host report: {exc}", code="invalid_report") from None


@api.post("/api/v1/agent/register", body=AgentRegisterIn, response=AgentRegisteredOut, status=201, auth=False, tags=TAGS, errors=[401, 422])
async def agent_register(call: Call) -> AgentRegisteredOut:
    """Trade a host's one-time join token for the agent's own token."""
    b: AgentRegisterIn = call.body
    host_id, token = await call.container.agent_service().register(b.join_token, b.name, _report(b.report))
    return AgentRegisteredOut(host_id=host_id, agent_token=token)


@api.post("/api/v1/agent/heartbeat", body=AgentReportIn, response=AgentReplyOut, auth=False, tags=TAGS, errors=[401, 422])
async def agent_heartbeat(call: Call) -> web.Response:
    """Report inventory and observed containers (Bearer: agent token); answers the desired state."""
    reply = await call.container.agent_service().heartbeat(_agent_token(call), _report(call.body.model_dump()))
    return web.json_response(reply_to_dict(reply))


@api.post("/api/v1/agent/wait", body=AgentWaitIn, response=AgentWaitOut, auth=False, tags=TAGS, errors=[401, 422])
async def agent_wait(call: Call) -> AgentWaitOut:
    """Long-poll between heartbeats (Bearer: agent token): answers as soon as the host's
    desired state differs from ``known``, or after ``timeout_seconds``."""
    b: AgentWaitIn = call.body
    known = {env_id: (k.desired, k.generation) for env_id, k in b.known.items()}
    work = await call.container.agent_service().wait_for_work(_agent_token(call), known, b.timeout_seconds)
    return AgentWaitOut(work=work)


def _agent_token(call: Call) -> str:
    scheme, _, token = call.request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("send 'Authorization: Bearer <agent token>'", code="invalid_agent_token")
    return token.strip()
