from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from remotegpu.entrypoints.http.schemas.common import PageQuery, Strict

CategoryName = Literal["environment", "billing", "alert", "security", "support", "system"]
ChannelName = Literal["in_app", "email"]


class NotificationOut(BaseModel):
    id: str
    kind: str
    category: str
    severity: str
    title: str
    body: str
    link: str | None
    created_at: datetime
    read_at: datetime | None


class InboxOut(BaseModel):
    items: list[NotificationOut]
    total: int
    unread: int


class InboxQuery(PageQuery):
    unread: bool = False  # only unread ones


class ReadAllOut(BaseModel):
    marked: int
    unread: int


class ChannelSwitches(Strict):
    in_app: bool = True
    email: bool = True
    sms: bool = Field(False, description="opt-in; to your verified phone number (critical ones are always sent)")


class QuietHours(Strict):
    start: str = Field(pattern=r"^\d{2}:\d{2}$", examples=["22:00"])
    end: str = Field(pattern=r"^\d{2}:\d{2}$", examples=["07:00"])


class Digest(Strict):
    categories: list[CategoryName] = Field(default_factory=list, max_length=6,
                                           description="their info-level emails come batched, one digest per period")
    period: Literal["hourly", "daily"] = Field("daily", description="hourly: at the top of each hour; daily: at 08:00 your time")


class PreferencesIn(Strict):
    locale: Literal["en", "zh-CN"] = "en"
    timezone: str = Field("UTC", max_length=64)
    quiet_hours: QuietHours | None = None
    #: Per category; a category left out keeps every channel on.
    categories: dict[CategoryName, ChannelSwitches] = Field(default_factory=dict)
    digest: Digest = Field(default_factory=Digest)


class PreferencesOut(BaseModel):
    locale: str
    timezone: str
    quiet_hours: QuietHours | None
    categories: dict[str, ChannelSwitches]
    #: Categories that cannot be turned off (critical notifications always arrive too).
    always_on: list[str]
    #: Channels this platform can deliver on (email needs the operator's SMTP settings).
    channels: list[str]
    digest: Digest


class PhoneIn(Strict):
    number: str = Field(min_length=5, max_length=32, description="international form, e.g. +8613800138000")


class PhoneCodeIn(Strict):
    code: str = Field(min_length=4, max_length=8, pattern=r"^\s*\d+\s*$")


class PhoneOut(BaseModel):
    number: str | None = Field(description="the verified number SMS notifications go to")
    verified_at: datetime | None
    pending_number: str | None = Field(description="a number waiting for its code")
    code_expires_at: datetime | None
    sms_enabled: bool = Field(description="this platform has an SMS provider")
