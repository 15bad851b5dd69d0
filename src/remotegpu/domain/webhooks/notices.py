"""What the webhooks context tells people: an endpoint was disabled (failing for days, or 410)."""

from __future__ import annotations

from datetime import datetime

from remotegpu.domain.notifications.models import Audience, Category, Message, Severity
from remotegpu.domain.notifications.templates import register_templates
from remotegpu.domain.workspaces.models import Role

register_templates({
    "webhook.endpoint_disabled": {
        "en": ("Webhook endpoint disabled: {url}",
               "Deliveries to {url} stopped: {reason}. Fix the receiver, re-enable the endpoint and replay what it missed."),
        "zh-CN": ("Webhook 端点已停用：{url}", "向 {url} 的投递已停止：{reason}。请修复接收端后重新启用该端点，并重放错过的消息。"),
    },
})


def endpoint_disabled(workspace_id: str, endpoint_id: str, url: str, reason: str, at: datetime) -> Message:
    return Message("webhook.endpoint_disabled", Category.SYSTEM, Severity.WARNING,
                   Audience(workspace_id=workspace_id, roles=(Role.OWNER, Role.ADMIN)),
                   f"webhook:{endpoint_id}:disabled:{at.isoformat()}", {"url": url, "reason": reason}, "/webhooks")
