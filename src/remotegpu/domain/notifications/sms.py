"""SMS: phone numbers (E.164), their verification by code, and the per-number send limits.

Providers (Aliyun, Tencent Cloud) refuse more than about 1 message a minute, 5 an hour and
10 a day to one number for one template, and may block the sender that keeps trying; we
hold ourselves to the same rules before asking them (``retry_after``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from remotegpu.domain.shared.errors import InvalidInput

#: (window, at most this many sends) per number × template.
RATE_RULES: tuple[tuple[timedelta, int], ...] = (
    (timedelta(minutes=1), 1), (timedelta(hours=1), 5), (timedelta(days=1), 10),
)
CODE_TTL = timedelta(minutes=10)
MAX_CODE_ATTEMPTS = 5
#: The two kinds of message we send; the operator maps each to a provider template code.
TEMPLATE_VERIFY = "verify"
TEMPLATE_NOTIFY = "notify"

_E164 = re.compile(r"^\+[1-9]\d{7,14}$")
_CN_MOBILE = re.compile(r"^1[3-9]\d{9}$")


def normalize_phone(text: str) -> str:
    """E.164 (``+8613800138000``); a bare 11-digit Chinese mobile number gets +86."""
    value = re.sub(r"[\s\-().]", "", text.strip())
    if value.startswith("00"):
        value = "+" + value[2:]
    if _CN_MOBILE.match(value):
        value = "+86" + value
    if not _E164.match(value):
        raise InvalidInput("phone number must be in international form, e.g. +8613800138000",
                           code="invalid_phone", details={"field": "number"})
    return value


def retry_after(sent: list[datetime], now: datetime) -> int | None:
    """Seconds until one more send to the number is within every rule; None when it is now."""
    wait = 0.0
    for window, limit in RATE_RULES:
        recent = sorted(t for t in sent if t > now - window)
        if len(recent) >= limit:
            # The oldest send that must leave the window for one more to fit.
            wait = max(wait, (recent[len(recent) - limit] + window - now).total_seconds())
    return max(1, int(wait + 0.999)) if wait > 0 else None


def masked(number: str) -> str:
    return number[:-8] + "****" + number[-4:] if len(number) > 8 else "****"


@dataclass
class PhoneNumber:
    """A user's phone: the verified number (used for SMS) and one being verified."""

    user_id: str
    number: str | None = None  # verified
    verified_at: datetime | None = None
    pending_number: str | None = None
    code_hash: str | None = None
    code_expires_at: datetime | None = None
    code_attempts: int = 0
    updated_at: datetime | None = None
