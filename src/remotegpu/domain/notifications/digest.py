"""One email for many low-severity notifications (a user's digest), plain text + HTML."""

from __future__ import annotations

import html

from remotegpu.domain.notifications.models import Notification
from remotegpu.domain.notifications.preferences import DEFAULT_LOCALE

_SUBJECT = {"en": "Your RemoteGPU digest: {n} notifications", "zh-CN": "RemoteGPU 通知摘要：{n} 条通知"}
_INTRO = {"en": "What happened since your last digest:", "zh-CN": "自上次摘要以来的通知："}
_FOOTER = {
    "en": "You receive this digest because of your notification preferences on RemoteGPU.",
    "zh-CN": "您收到此摘要是因为您在 RemoteGPU 上的通知设置。",
}


def digest_email(items: list[Notification], locale: str, base_url: str | None) -> tuple[str, str, str]:
    """(subject, text, html), oldest first."""
    pick = lambda table: table.get(locale, table[DEFAULT_LOCALE])  # noqa: E731
    items = sorted(items, key=lambda n: (n.created_at, n.id))
    subject = pick(_SUBJECT).format(n=len(items))
    lines, blocks = [pick(_INTRO), ""], []
    e = html.escape
    for n in items:
        link = f"{base_url.rstrip('/')}{n.link}" if base_url and n.link else None
        stamp = n.created_at.strftime("%Y-%m-%d %H:%M UTC")
        lines += [f"* {n.title} ({stamp})", f"  {n.body}"] + ([f"  {link}"] if link else []) + [""]
        title = f'<a href="{e(link, quote=True)}">{e(n.title)}</a>' if link else e(n.title)
        blocks.append(f"<li><strong>{title}</strong> <span style=\"color:#888\">{e(stamp)}</span><br>{e(n.body)}</li>")
    text = "\n".join(lines) + f"-- \n{pick(_FOOTER)}\n"
    page = (f'<!doctype html><html lang="{e(locale)}"><body><h2>{e(subject)}</h2><p>{e(pick(_INTRO))}</p>'
            f"<ul>{''.join(blocks)}</ul><hr><p style=\"color:#888;font-size:12px\">{e(pick(_FOOTER))}</p></body></html>")
    return subject, text, page
