"""Which domain events are worth telling people about, and how (pure functions).

Environment status changes come from the environment's event log (the same events
users see on its timeline); security events from the audit log.
"""

from __future__ import annotations

from dataclasses import dataclass

from remotegpu.domain.environments.models import EnvironmentEvent, EnvStatus
from remotegpu.domain.identity.models import AuditEvent
from remotegpu.domain.notifications.models import Audience, Category, Message, Severity
from remotegpu.domain.workspaces.models import Role

#: The reasons application/environments/autostop.py gives.
IDLE_PREFIX = "auto-stop: idle"
LIMIT_PREFIX = "auto-stop: ran for its limit"
_RESPONSIBLE = (Role.OWNER, Role.ADMIN)


@dataclass(frozen=True)
class EnvironmentFacts:
    """What a message about an environment needs to know of it."""

    id: str
    name: str
    workspace_id: str
    owner_id: str


def from_environment_event(env: EnvironmentFacts, event: EnvironmentEvent) -> Message | None:
    reason = event.reason or ""
    link = f"/environments/{env.id}"
    params = {"name": env.name, "reason": reason}
    everyone = Audience(workspace_id=env.workspace_id)
    # The owner and the people who run the workspace: the ones who can act on it.
    responsible = Audience(user_ids=(env.owner_id,), workspace_id=env.workspace_id, roles=_RESPONSIBLE)
    if event.to_status in (EnvStatus.STOPPING, EnvStatus.STOPPED) and event.from_status in (
        EnvStatus.RUNNING, EnvStatus.STARTING, EnvStatus.LOST,
    ):
        if reason.startswith(IDLE_PREFIX):
            return Message("environment.stopped_idle", Category.ENVIRONMENT, Severity.WARNING, everyone, event.id, params, link)
        if reason.startswith(LIMIT_PREFIX):
            return Message("environment.stopped_limit", Category.ENVIRONMENT, Severity.INFO, everyone, event.id, params, link)
        return None
    if event.to_status is EnvStatus.FAILED:
        return Message("environment.failed", Category.ENVIRONMENT, Severity.WARNING, responsible, event.id, params, link)
    if event.to_status is EnvStatus.LOST:
        return Message("environment.lost", Category.ENVIRONMENT, Severity.WARNING, responsible, event.id, params, link)
    return None


def from_audit_event(event: AuditEvent, username: str) -> Message | None:
    if event.action == "user.password.changed" and event.target_id:
        return Message("security.password_changed", Category.SECURITY, Severity.WARNING,
                       Audience(user_ids=(event.target_id,)), event.id, {"username": username}, "/account")
    if event.action == "token.created" and event.actor_id:
        name = event.details.get("name", "")
        return Message("security.token_created", Category.SECURITY, Severity.INFO,
                       Audience(user_ids=(event.actor_id,)), event.id, {"username": username, "token_name": name}, "/account")
    return None


#: Audit actions that may become a message (the dispatcher looks the user up only for these).
AUDIT_ACTIONS = frozenset({"user.password.changed", "token.created"})


def audit_subject(event: AuditEvent) -> str | None:
    """The user an audit event's message is about."""
    if event.action == "user.password.changed":
        return event.target_id
    if event.action == "token.created":
        return event.actor_id
    return None
