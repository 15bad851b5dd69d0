"""Message texts per kind and language, and their email rendering (plain text + HTML).

Parameters are filled with ``str.format``; values come from our own records (names,
reasons) but may contain anything a user typed, so HTML escapes every one.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

from remotegpu.domain.notifications.preferences import DEFAULT_LOCALE

# kind → locale → (title, body)
TEMPLATES: dict[str, dict[str, tuple[str, str]]] = {
    "alert.firing": {
        "en": ("Alert firing: {rule}", "{rule}: {what} (value {value}) since {since}."),
        "zh-CN": ("告警触发：{rule}", "{rule}：{what}（当前值 {value}），开始于 {since}。"),
    },
    "alert.resolved": {
        "en": ("Alert resolved: {rule}", "{rule}: {what} is back to normal."),
        "zh-CN": ("告警已恢复：{rule}", "{rule}：{what} 已恢复正常。"),
    },
    "environment.stopped_idle": {
        "en": ("Environment {name} was stopped for idleness",
               "Environment {name} was stopped automatically: {reason}. Its disk is kept; start it again when you need it."),
        "zh-CN": ("环境 {name} 因空闲已停止",
                  "环境 {name} 已被自动停止：{reason}。磁盘数据会保留，需要时可再次启动。"),
    },
    "environment.stopped_limit": {
        "en": ("Environment {name} reached its time limit",
               "Environment {name} was stopped automatically: {reason}. Its disk is kept."),
        "zh-CN": ("环境 {name} 已达到运行时限",
                  "环境 {name} 已被自动停止：{reason}。磁盘数据会保留。"),
    },
    "environment.failed": {
        "en": ("Environment {name} failed", "Environment {name} failed: {reason}"),
        "zh-CN": ("环境 {name} 运行失败", "环境 {name} 运行失败：{reason}"),
    },
    "environment.lost": {
        "en": ("Environment {name} lost contact", "Environment {name} is unreachable: {reason}"),
        "zh-CN": ("环境 {name} 失去联系", "环境 {name} 当前无法访问：{reason}"),
    },
    "security.password_changed": {
        "en": ("Your password was changed",
               "The password of your account {username} was changed. If this was not you, contact your administrator now."),
        "zh-CN": ("您的密码已修改", "您的账号 {username} 的密码已被修改。如果这不是您本人的操作，请立即联系管理员。"),
    },
    "security.token_created": {
        "en": ("New API token {token_name}",
               "A personal API token named {token_name} was created for your account {username}. If this was not you, revoke it now."),
        "zh-CN": ("新建了 API 令牌 {token_name}",
                  "您的账号 {username} 新建了名为 {token_name} 的个人 API 令牌。如果这不是您本人的操作，请立即吊销。"),
    },
}


def register_templates(texts: dict[str, dict[str, tuple[str, str]]]) -> None:
    """Other contexts add their message kinds (kind → locale → (title, body)); "en" is required."""
    for kind, by_locale in texts.items():
        if DEFAULT_LOCALE not in by_locale:
            raise ValueError(f"template {kind!r} has no {DEFAULT_LOCALE!r} text")
        TEMPLATES[kind] = dict(by_locale)


@dataclass(frozen=True)
class Rendered:
    title: str
    body: str


class _Missing(dict):
    def __missing__(self, key: str) -> str:  # a missing parameter must not lose the message
        return "?"


def render(kind: str, locale: str, params: dict[str, Any]) -> Rendered:
    texts = TEMPLATES[kind]
    title, body = texts.get(locale) or texts[DEFAULT_LOCALE]
    values = _Missing({k: str(v) for k, v in params.items()})
    return Rendered(title.format_map(values), body.format_map(values))


_FOOTER = {
    "en": "You receive this because of your notification preferences on RemoteGPU.",
    "zh-CN": "您收到此邮件是因为您在 RemoteGPU 上的通知设置。",
}
_OPEN = {"en": "Open in the console", "zh-CN": "在控制台中打开"}


def email_parts(title: str, body: str, locale: str, link: str | None) -> tuple[str, str]:
    """(plain text, HTML) of an email; ``link`` an absolute URL or None."""
    footer = _FOOTER.get(locale, _FOOTER[DEFAULT_LOCALE])
    open_label = _OPEN.get(locale, _OPEN[DEFAULT_LOCALE])
    text = f"{body}\n\n" + (f"{open_label}: {link}\n\n" if link else "") + f"-- \n{footer}\n"
    e = html.escape
    link_html = f'<p><a href="{e(link, quote=True)}">{e(open_label)}</a></p>' if link else ""
    page = (f'<!doctype html><html lang="{e(locale)}"><body>'
            f"<h2>{e(title)}</h2><p>{e(body)}</p>{link_html}"
            f'<hr><p style="color:#888;font-size:12px">{e(footer)}</p></body></html>')
    return text, page
