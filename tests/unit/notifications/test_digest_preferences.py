"""Digest rules: which emails wait, and when a digest goes out (the user's own clock)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from remotegpu.domain.notifications.models import Category, Channel, Severity
from remotegpu.domain.notifications.preferences import NotificationPreferences
from remotegpu.domain.shared.errors import InvalidInput

UTC = timezone.utc


def test_only_info_email_of_a_digest_category_waits():
    p = NotificationPreferences("u", digest={Category.ENVIRONMENT})
    assert p.in_digest(Category.ENVIRONMENT, Severity.INFO, Channel.EMAIL)
    assert not p.in_digest(Category.ENVIRONMENT, Severity.WARNING, Channel.EMAIL)
    assert not p.in_digest(Category.ENVIRONMENT, Severity.INFO, Channel.IN_APP)
    assert not p.in_digest(Category.ENVIRONMENT, Severity.INFO, Channel.SMS)
    assert not p.in_digest(Category.BILLING, Severity.INFO, Channel.EMAIL)


def test_daily_digest_at_eight_in_the_users_zone_and_hourly_on_the_hour():
    shanghai = NotificationPreferences("u", timezone="Asia/Shanghai", digest={Category.SUPPORT})
    # 23:30 UTC = 07:30 next day in Shanghai → 08:00 Shanghai = 00:00 UTC.
    assert shanghai.next_digest(datetime(2026, 11, 30, 23, 30, tzinfo=UTC)) == datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
    assert shanghai.next_digest(datetime(2026, 12, 1, 0, 0, tzinfo=UTC)) == datetime(2026, 12, 2, 0, 0, tzinfo=UTC)
    kolkata = NotificationPreferences("u", timezone="Asia/Kolkata", digest_period="hourly")  # UTC+05:30
    assert kolkata.next_digest(datetime(2026, 11, 30, 10, 10, tzinfo=UTC)) == datetime(2026, 11, 30, 10, 30, tzinfo=UTC)


def test_security_is_never_batched_and_periods_are_known():
    with pytest.raises(InvalidInput) as e:
        NotificationPreferences("u", digest={Category.SECURITY}).validate()
    assert e.value.code == "always_on"
    with pytest.raises(InvalidInput):
        NotificationPreferences("u", digest_period="weekly").validate()
