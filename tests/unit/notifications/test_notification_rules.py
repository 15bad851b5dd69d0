"""Pure notification rules: which events notify whom, rendering, preferences, quiet hours."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

import pytest

from remotegpu.application.shared.clock import FrozenClock
from remotegpu.domain.environments.models import EnvironmentEvent, EnvStatus
from remotegpu.domain.identity.models import AuditEvent
from remotegpu.domain.notifications import rules
from remotegpu.domain.notifications.models import Category, Channel, Severity
from remotegpu.domain.notifications.preferences import NotificationPreferences
from remotegpu.domain.notifications.templates import TEMPLATES, email_parts, render
from remotegpu.domain.shared.errors import InvalidInput
from remotegpu.domain.workspaces.models import Role

UTC = timezone.utc
ENV = rules.EnvironmentFacts("e1", "trainer", "ws1", "u-owner")
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def event(frm, to, reason=""):
    return EnvironmentEvent("ev1", "e1", NOW, frm, to, reason)


def test_idle_stop_tells_every_member_of_the_workspace():
    m = rules.from_environment_event(ENV, event(EnvStatus.RUNNING, EnvStatus.STOPPING, "auto-stop: idle — GPU utilisation under 5%"))
    assert m.kind == "environment.stopped_idle" and m.category is Category.ENVIRONMENT and m.severity is Severity.WARNING
    assert m.audience.workspace_id == "ws1" and m.audience.roles == () and m.source_key == "ev1"
    assert m.link == "/environments/e1" and m.params["name"] == "trainer"


def test_time_limit_stop_failed_and_lost_have_their_own_messages():
    limit = rules.from_environment_event(ENV, event(EnvStatus.RUNNING, EnvStatus.STOPPING, "auto-stop: ran for its limit of 60 minutes"))
    assert limit.kind == "environment.stopped_limit" and limit.severity is Severity.INFO
    failed = rules.from_environment_event(ENV, event(EnvStatus.STARTING, EnvStatus.FAILED, "container failed: oom"))
    assert failed.kind == "environment.failed"
    assert failed.audience.user_ids == ("u-owner",) and set(failed.audience.roles) == {Role.OWNER, Role.ADMIN}
    assert rules.from_environment_event(ENV, event(EnvStatus.RUNNING, EnvStatus.LOST, "host gone")).kind == "environment.lost"


@pytest.mark.parametrize("frm, to, reason", [
    (EnvStatus.RUNNING, EnvStatus.STOPPING, "stopped by alice"),  # a person did it: they know
    (EnvStatus.STOPPING, EnvStatus.STOPPED, "auto-stop: idle"),  # the agent confirming: already told
    (None, EnvStatus.QUEUED, "created"),
    (EnvStatus.STARTING, EnvStatus.RUNNING, ""),
])
def test_ordinary_transitions_tell_nobody(frm, to, reason):
    assert rules.from_environment_event(ENV, event(frm, to, reason)) is None


def test_security_events_go_to_the_account_owner_only():
    changed = AuditEvent("a1", "user.password.changed", NOW, actor_id="u1", target_type="user", target_id="u1")
    m = rules.from_audit_event(changed, "alice")
    assert m.category is Category.SECURITY and m.audience.user_ids == ("u1",) and m.source_key == "a1"
    token = AuditEvent("a2", "token.created", NOW, actor_id="u1", details={"name": "ci"})
    assert rules.from_audit_event(token, "alice").params == {"username": "alice", "token_name": "ci"}
    assert rules.from_audit_event(AuditEvent("a3", "auth.login.succeeded", NOW, actor_id="u1"), "alice") is None


def test_every_template_exists_in_both_languages_and_renders():
    for kind, texts in TEMPLATES.items():
        assert set(texts) == {"en", "zh-CN"}, kind
        for locale in texts:
            r = render(kind, locale, {"name": "n", "reason": "r", "username": "u", "token_name": "t"})
            assert r.title and r.body and "{" not in r.title + r.body
    assert render("environment.failed", "zh-CN", {"name": "x", "reason": "y"}).title == "环境 x 运行失败"
    assert render("environment.failed", "fr", {"name": "x", "reason": "y"}).title == "Environment x failed"  # falls back
    assert "?" in render("environment.failed", "en", {}).title  # a missing parameter does not lose the message


def test_email_html_escapes_what_users_typed():
    text, html = email_parts("Env <b>", "reason: <script>alert(1)</script>", "en", "https://gpu.example/environments/e1?a=1&b=2")
    assert "<script>" not in html and "&lt;script&gt;" in html and "&amp;b=2" in html
    assert "<script>alert(1)</script>" in text and "https://gpu.example/environments/e1?a=1&b=2" in text


def test_security_and_critical_cannot_be_turned_off():
    prefs = NotificationPreferences("u", disabled={(Category.ENVIRONMENT, Channel.EMAIL)})
    assert not prefs.allows(Category.ENVIRONMENT, Severity.WARNING, Channel.EMAIL)
    assert prefs.allows(Category.ENVIRONMENT, Severity.WARNING, Channel.IN_APP)
    assert prefs.allows(Category.ENVIRONMENT, Severity.CRITICAL, Channel.EMAIL)
    with pytest.raises(InvalidInput) as e:
        NotificationPreferences("u", disabled={(Category.SECURITY, Channel.EMAIL)}).validate()
    assert e.value.code == "always_on"


@pytest.mark.parametrize("bad", [
    dict(locale="fr"), dict(timezone="Mars/Olympus"), dict(quiet_start=time(22)),
    dict(quiet_start=time(22), quiet_end=time(22)),
])
def test_invalid_preferences_are_refused(bad):
    with pytest.raises(InvalidInput):
        NotificationPreferences("u", **bad).validate()


def test_quiet_hours_across_midnight_in_the_users_time_zone():
    clock = FrozenClock(datetime(2026, 11, 29, 13, 30, tzinfo=UTC))  # 21:30 in Shanghai (UTC+8)
    prefs = NotificationPreferences("u", timezone="Asia/Shanghai", quiet_start=time(22), quiet_end=time(7))
    assert prefs.quiet_until(clock.now(), Severity.WARNING, Channel.EMAIL) is None
    clock.advance(minutes=45)  # 22:15 local
    assert prefs.quiet_until(clock.now(), Severity.WARNING, Channel.EMAIL) == datetime(2026, 11, 29, 23, 0, tzinfo=UTC)  # 07:00 next day local
    clock.advance(hours=3)  # 01:15 local, after midnight
    assert prefs.quiet_until(clock.now(), Severity.WARNING, Channel.EMAIL) == datetime(2026, 11, 29, 23, 0, tzinfo=UTC)
    assert prefs.quiet_until(clock.now(), Severity.CRITICAL, Channel.EMAIL) is None  # critical bypasses
    assert prefs.quiet_until(clock.now(), Severity.WARNING, Channel.IN_APP) is None  # the inbox is never held back
    clock.advance(hours=6)  # 07:15 local
    assert prefs.quiet_until(clock.now(), Severity.WARNING, Channel.EMAIL) is None


def test_quiet_hours_within_one_day():
    prefs = NotificationPreferences("u", quiet_start=time(12), quiet_end=time(14))
    assert prefs.quiet_until(NOW + timedelta(minutes=30), Severity.INFO, Channel.EMAIL) == datetime(2026, 11, 29, 14, 0, tzinfo=UTC)
    assert prefs.quiet_until(NOW + timedelta(hours=2), Severity.INFO, Channel.EMAIL) is None
    assert prefs.quiet_until(NOW - timedelta(minutes=1), Severity.INFO, Channel.EMAIL) is None
