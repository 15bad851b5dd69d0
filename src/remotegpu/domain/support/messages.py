"""What the support context tells people (notification templates) and other systems (webhook event types)."""

from __future__ import annotations

from remotegpu.domain.notifications.templates import register_templates
from remotegpu.domain.webhooks import events

register_templates({
    "support.ticket_created": {
        "en": ("New ticket: {subject}", "{requester} opened a {priority} ticket: {subject}"),
        "zh-CN": ("新工单：{subject}", "{requester} 提交了一个{priority_zh}优先级工单：{subject}"),
    },
    "support.reply": {
        "en": ("Reply on your ticket: {subject}", "Support replied to your ticket {subject}: {excerpt}"),
        "zh-CN": ("您的工单有新回复：{subject}", "客服回复了您的工单 {subject}：{excerpt}"),
    },
    "support.customer_reply": {
        "en": ("Requester replied: {subject}", "{requester} replied on ticket {subject}: {excerpt}"),
        "zh-CN": ("用户回复了工单：{subject}", "{requester} 回复了工单 {subject}：{excerpt}"),
    },
    "support.solved": {
        "en": ("Ticket solved: {subject}",
               "Your ticket {subject} was marked solved. Reply or reopen it within {close_days} days if the problem remains."),
        "zh-CN": ("工单已解决：{subject}", "您的工单 {subject} 已标记为已解决。如问题仍在，请在 {close_days} 天内回复或重新打开。"),
    },
    "support.pending_reminder": {
        "en": ("We are waiting for your answer: {subject}",
               "Support is waiting for your answer on ticket {subject}. Without one it will be marked solved on {solve_on}."),
        "zh-CN": ("等待您的回复：{subject}", "客服正在等待您对工单 {subject} 的回复。如未回复，该工单将于 {solve_on} 自动标记为已解决。"),
    },
    "support.auto_solved": {
        "en": ("Ticket solved for lack of an answer: {subject}",
               "Ticket {subject} was marked solved because we did not hear back. Reopen it within {close_days} days if needed."),
        "zh-CN": ("工单因未回复已自动解决：{subject}", "由于未收到您的回复，工单 {subject} 已自动标记为已解决。如有需要，请在 {close_days} 天内重新打开。"),
    },
    "support.sla_warning": {
        "en": ("SLA near breach ({target}): {subject}", "Ticket {subject} ({priority}) is near its {target} target; due {due}."),
        "zh-CN": ("SLA 即将违约（{target_zh}）：{subject}", "工单 {subject}（{priority_zh}）即将超过{target_zh}时限，截止 {due}。"),
    },
    "support.sla_breach": {
        "en": ("SLA breached ({target}): {subject}", "Ticket {subject} ({priority}) missed its {target} target."),
        "zh-CN": ("SLA 已违约（{target_zh}）：{subject}", "工单 {subject}（{priority_zh}）已超过{target_zh}时限。"),
    },
    "support.assigned": {
        "en": ("Ticket assigned to you: {subject}", "Ticket {subject} ({priority}) was assigned to you."),
        "zh-CN": ("工单已分配给您：{subject}", "工单 {subject}（{priority_zh}）已分配给您。"),
    },
})

PRIORITY_ZH = {"low": "低", "normal": "普通", "high": "高", "urgent": "紧急"}
TARGET_ZH = {"first_response": "首次响应", "resolution": "解决"}

TICKET_CREATED = events.register("ticket.created", "A support ticket was opened.")
TICKET_REPLIED = events.register("ticket.replied", "A public reply was added to a ticket (internal notes never).")
TICKET_STATUS_CHANGED = events.register("ticket.status_changed", "A ticket changed status (open, pending, on hold, solved, closed).")
TICKET_SLA_BREACHED = events.register("ticket.sla_breached", "A ticket missed a first-response or resolution target.")
