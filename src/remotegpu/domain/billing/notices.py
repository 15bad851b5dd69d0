"""Billing notification texts (en, zh-CN), registered with the notification templates."""

from __future__ import annotations

from remotegpu.domain.notifications.templates import TEMPLATES
from remotegpu.domain.webhooks import events

#: Webhook event types of the billing context (issue 17: balance low, bill finalized).
BALANCE_LOW = events.register("billing.balance_low", "A workspace's balance fell under its warning threshold.")
BILL_FINALIZED = events.register("billing.bill_finalized", "A workspace's monthly bill was finalized (immutable from now on).")

BILLING_TEMPLATES: dict[str, dict[str, tuple[str, str]]] = {
    "billing.low_balance": {
        "en": ("Low balance in {workspace}",
               "The balance of workspace {workspace} is {balance}, under its warning threshold of {threshold}. "
               "Top up to keep environments running: at zero they are stopped (disks are kept)."),
        "zh-CN": ("工作空间 {workspace} 余额不足",
                  "工作空间 {workspace} 的余额为 {balance}，低于预警值 {threshold}。请及时充值：余额为零时运行中的环境会被停止（磁盘保留）。"),
    },
    "billing.arrears_stopped": {
        "en": ("Environments of {workspace} stopped: balance at zero",
               "The balance of workspace {workspace} is {balance}. Its running environments were stopped ({count}); "
               "their disks are kept and still charged. Unless the balance is topped up, the disks are deleted on {delete_on}."),
        "zh-CN": ("余额为零，{workspace} 的环境已停止",
                  "工作空间 {workspace} 的余额为 {balance}，运行中的环境（{count} 个）已被停止；磁盘保留并继续计费。"
                  "若未充值，磁盘将于 {delete_on} 删除。"),
    },
    "billing.disk_deletion_warning": {
        "en": ("Disks of {workspace} will be deleted on {delete_on}",
               "Workspace {workspace} has been in arrears since {since} (balance {balance}). Its environments' disks "
               "are deleted on {delete_on} unless the balance is topped up."),
        "zh-CN": ("{workspace} 的磁盘将于 {delete_on} 删除",
                  "工作空间 {workspace} 自 {since} 起欠费（余额 {balance}）。若未充值，其环境的磁盘将于 {delete_on} 删除。"),
    },
    "billing.disks_deleted": {
        "en": ("Disks of {workspace} deleted after {days} days in arrears",
               "Workspace {workspace} was in arrears for {days} days: its environments ({count}) were deleted with their disks."),
        "zh-CN": ("{workspace} 欠费 {days} 天，磁盘已删除",
                  "工作空间 {workspace} 已欠费 {days} 天：其环境（{count} 个）及磁盘已被删除。"),
    },
    "billing.budget": {
        "en": ("{workspace} used {pct}% of its monthly budget",
               "Workspace {workspace} has been charged {spent} this month, {pct}% of its budget of {budget}."),
        "zh-CN": ("{workspace} 已用本月预算的 {pct}%",
                  "工作空间 {workspace} 本月已消费 {spent}，达到预算 {budget} 的 {pct}%。"),
    },
}

TEMPLATES.update(BILLING_TEMPLATES)
