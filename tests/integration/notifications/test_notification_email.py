"""Notifications end to end with a real SMTP server (aiosmtpd, started here).

An environment auto-stopped for idleness tells every member of its workspace once in
the inbox and once by email, except the member who switched environment emails off;
a delivery job retried after its worker died mid-send sends nothing twice. Both on
the in-memory adapters and on PostgreSQL (the SQL repository and migration 0015).
"""

from __future__ import annotations

import asyncio
import dataclasses
import email
import socket
from datetime import timedelta
from email import policy
from types import SimpleNamespace

import pytest
from aiosmtpd.controller import Controller
from dependency_injector import providers

from remotegpu.adapters.db.migrate import upgrade_async
from remotegpu.application.environments.service import CreateRequest
from remotegpu.application.fleet.agent_protocol import ObservedEnvironment
from remotegpu.application.shared.clock import FrozenClock
from remotegpu.domain.notifications.models import Category, Channel, DeliveryStatus
from remotegpu.domain.notifications.preferences import NotificationPreferences
from remotegpu.domain.workspaces.models import Role
from remotegpu.entrypoints.containers import build_container, close_container
from tests.conftest import make_settings
from tests.support.components import postgres_url
from tests.support.postgres import reset_schema
from tests.support.workspaces import join
from tests.unit.environments.conftest import World


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Inbox:
    """aiosmtpd handler: keeps every message it accepted."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.fail_next = 0  # answer 451 (transient) this many times

    async def handle_DATA(self, server, session, envelope):
        if self.fail_next:
            self.fail_next -= 1
            return "451 4.3.0 try again later"
        msg = email.message_from_bytes(envelope.content, policy=policy.default)
        msg["X-Envelope-To"] = ",".join(envelope.rcpt_tos)
        self.messages.append(msg)
        return "250 OK"

    def to(self, address: str) -> list:
        return [m for m in self.messages if m["X-Envelope-To"] == address]


@pytest.fixture
def smtp():
    inbox, port = _Inbox(), _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield SimpleNamespace(port=port, inbox=inbox)
    controller.stop()


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def world(request, tmp_path, smtp):
    overrides = dict(smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_security="none", smtp_from="RemoteGPU <noreply@gpu.example>",
                     public_url="https://gpu.example")
    if request.param == "postgres":
        url = postgres_url()
        await asyncio.to_thread(reset_schema, url)  # it runs its own event loop
        await upgrade_async(url)
        container = build_container(make_settings(tmp_path, database_url=url, **overrides), persistence="sql")
    elif request.param == "sqlite":  # the embedded default
        url = f"sqlite+aiosqlite:///{tmp_path / 'data' / 'remotegpu.db'}"
        container = build_container(make_settings(tmp_path, database_url=url, **overrides), persistence="sql")
        await upgrade_async(url)
    else:
        container = build_container(make_settings(tmp_path, **overrides), persistence="memory")
    clock = FrozenClock()
    container.clock.override(providers.Object(clock))
    container.delivery_service.add_kwargs(backoff=(0.05, 0.05))
    w = World(container, clock)
    yield w
    await container.task_queue().drain()
    await close_container(container)


async def _idle_stop(world, owner, ws: str) -> str:
    host = await world.add_host()
    req = CreateRequest(workspace_id=ws, name="trainer", gpu_count=1, cpu_cores=2, memory_gib=8, idle_stop_minutes=10)
    env_id = (await world.envs.create(owner, req)).env.id
    await host.beat_all_running()
    gpu = (await world.envs.get(owner, env_id)).gpus[0].uuid
    report = host.report({env_id: ("running", 0)})
    report.utilization.update({gpu: 1})
    await world.agents.heartbeat(host.token, report)
    stop = world.container.autostop()
    await stop.sweep()
    world.clock.advance(minutes=11)
    assert await stop.sweep() == [env_id]
    await world.container.task_queue().drain()
    return env_id


async def test_idle_stop_tells_each_subscribed_member_once_in_app_and_by_email(world, smtp):
    owner, member, viewer, quiet = [await world.user(n) for n in ("owner", "member", "viewer", "optout")]
    ws = (await world.container.workspace_service().create(owner, "team")).workspace.id
    for who, role in ((member, Role.MEMBER), (viewer, Role.VIEWER), (quiet, Role.MEMBER)):
        await join(world.container, owner, ws, who, role)
    notifications = world.container.notification_service()
    await notifications.set_preferences(NotificationPreferences(
        quiet.id, disabled={(Category.ENVIRONMENT, Channel.EMAIL), (Category.ENVIRONMENT, Channel.IN_APP)}))
    await notifications.set_preferences(NotificationPreferences(viewer.id, locale="zh-CN"))
    stranger = await world.user("stranger")

    env_id = await _idle_stop(world, owner, ws)
    # Whatever agents report next (the container stopped) tells nobody again.
    await world.container.autostop().sweep()
    await world.container.task_queue().drain()

    for user in (owner, member, viewer):
        items, total, unread = await notifications.inbox(user.id, unread_only=False, limit=50, offset=0)
        stops = [n for n in items if n.kind == "environment.stopped_idle"]
        assert len(stops) == 1 and unread >= 1, (user.username, items)
        assert stops[0].link == f"/environments/{env_id}"
        mails = smtp.inbox.to(user.email)
        assert len(mails) == 1, (user.username, [m["Subject"] for m in smtp.inbox.messages])
        mail = mails[0]
        assert mail.get_content_type() == "multipart/alternative"
        text = mail.get_body(("plain",)).get_content()
        html = mail.get_body(("html",)).get_content()
        assert "trainer" in text and "trainer" in html and f"https://gpu.example/environments/{env_id}" in html
        assert mail["Message-ID"].startswith(f"<{stops[0].id}.email@")
    assert "空闲" in smtp.inbox.to(viewer.email)[0]["Subject"]  # the viewer reads Chinese
    assert "idleness" in smtp.inbox.to(owner.email)[0]["Subject"]
    assert smtp.inbox.to(quiet.email) == []
    assert (await notifications.inbox(quiet.id, unread_only=False, limit=50, offset=0))[1] == 0
    assert smtp.inbox.to(stranger.email) == [] and await notifications.unread_count(stranger.id) == 0
    assert len(smtp.inbox.messages) == 3


async def test_a_retry_after_a_crash_mid_send_does_not_send_twice(world, smtp):
    owner = await world.user("owner")
    ws = await world.personal_ws(owner)
    deliveries = world.container.delivery_service()
    real_sender = deliveries.sender

    class WorkerDied(BaseException):
        """Not an Exception: nothing in the job catches it, as nothing survives a killed process."""

    class CrashAfterSending:
        """The worker dies right after SMTP accepted the message, before recording it."""

        async def send(self, message):
            await real_sender.send(message)
            raise WorkerDied()

    deliveries.sender = CrashAfterSending()
    repo = world.container.notification_repo()
    try:
        await _idle_stop(world, owner, ws)  # the inline queue's job ends with WorkerDied
    finally:
        deliveries.sender = real_sender
    assert len(smtp.inbox.to(owner.email)) == 1
    items, _, _ = await world.container.notification_service().inbox(owner.id, unread_only=False, limit=50, offset=0)
    email_delivery = next(d for d in await repo.list_deliveries(items[0].id) if d.channel is Channel.EMAIL)
    assert email_delivery.status is DeliveryStatus.SENDING

    # The queue retries the job (Dramatiq would, after the worker died): nothing more is sent.
    assert await deliveries.deliver(email_delivery.id) is None
    await world.container.task_queue().enqueue("notifications.deliver", delivery_id=email_delivery.id)
    await world.container.task_queue().drain()
    assert len(smtp.inbox.to(owner.email)) == 1
    # Later, the sweep records that its outcome is unknown (and still does not resend).
    world.clock.advance(minutes=20)
    await deliveries.send_due()
    await world.container.task_queue().drain()
    assert (await repo.get_delivery(email_delivery.id)).status is DeliveryStatus.UNKNOWN
    assert len(smtp.inbox.to(owner.email)) == 1


async def test_a_transient_smtp_failure_is_retried_and_recorded(world, smtp):
    owner = await world.user("owner")
    smtp.inbox.fail_next = 1
    await _idle_stop(world, owner, await world.personal_ws(owner))
    assert len(smtp.inbox.to(owner.email)) == 1
    items, _, _ = await world.container.notification_service().inbox(owner.id, unread_only=False, limit=50, offset=0)
    repo = world.container.notification_repo()
    delivery = next(d for d in await repo.list_deliveries(items[0].id) if d.channel is Channel.EMAIL)
    assert delivery.status is DeliveryStatus.SENT and delivery.attempts == 2


async def test_quiet_hours_hold_email_back_until_they_end(world, smtp):
    owner = await world.user("owner")
    now = world.clock.now().replace(second=0, microsecond=0)
    start, end = now.time(), (now + timedelta(hours=1)).time()  # UTC: the default time zone
    await world.container.notification_service().set_preferences(NotificationPreferences(owner.id, quiet_start=start, quiet_end=end))
    await _idle_stop(world, owner, await world.personal_ws(owner))
    assert smtp.inbox.to(owner.email) == []  # the clock moved 11 minutes: still quiet
    assert await world.container.notification_service().unread_count(owner.id) == 1  # the inbox is not held back
    world.clock.advance(hours=1)
    await world.container.delivery_service().send_due()
    await world.container.task_queue().drain()
    assert len(smtp.inbox.to(owner.email)) == 1


async def test_security_events_notify_the_account_owner(world, smtp):
    alice = await world.user("alice")
    account = world.container.account_service()
    await account.create_api_token(alice.id, "ci")
    await account.change_password(alice.id, "long enough password", "another long password")
    await world.container.task_queue().drain()
    items, _, unread = await world.container.notification_service().inbox(alice.id, unread_only=False, limit=50, offset=0)
    assert sorted(n.kind for n in items) == ["security.password_changed", "security.token_created"] and unread == 2
    assert len(smtp.inbox.to(alice.email)) == 2


async def test_a_failed_environment_tells_its_owner_and_the_workspace_admins_not_viewers(world, smtp):
    owner, admin, viewer = [await world.user(n) for n in ("owner", "wsadmin", "viewer")]
    ws = (await world.container.workspace_service().create(owner, "team")).workspace.id
    await join(world.container, owner, ws, admin, Role.ADMIN)
    await join(world.container, owner, ws, viewer, Role.VIEWER)
    host = await world.add_host()
    req = CreateRequest(workspace_id=ws, name="crashy", gpu_count=1, cpu_cores=2, memory_gib=8)
    env_id = (await world.envs.create(owner, req)).env.id
    await host.beat_all_running()
    report = dataclasses.replace(host.report(), observed=[ObservedEnvironment(env_id, "failed", 0, "exit code 137")])
    await world.agents.heartbeat(host.token, report)
    await world.agents.heartbeat(host.token, report)  # reported again: told once
    await world.container.task_queue().drain()
    notifications = world.container.notification_service()
    for user, expected in ((owner, 1), (admin, 1), (viewer, 0)):
        items, _, _ = await notifications.inbox(user.id, unread_only=False, limit=50, offset=0)
        failed = [n for n in items if n.kind == "environment.failed"]
        assert len(failed) == expected, (user.username, items)
        assert len(smtp.inbox.to(user.email)) == expected
    assert "exit code 137" in failed_body(await notifications.inbox(owner.id, unread_only=False, limit=5, offset=0))


def failed_body(inbox) -> str:
    return next(n.body for n in inbox[0] if n.kind == "environment.failed")


async def test_a_rolled_back_change_tells_nobody(world, smtp):
    owner = await world.user("owner")
    account = world.container.account_service()
    async with world.container.uow() as uow:  # the use case records the event, then fails before commit
        from remotegpu.application.identity import audit

        await audit.record(uow, world.clock, "token.created", actor_id=owner.id, target_type="api_token", target_id="t", name="x")
    await account.create_api_token(owner.id, "real")
    await world.container.task_queue().drain()
    items, _, _ = await world.container.notification_service().inbox(owner.id, unread_only=False, limit=50, offset=0)
    assert [n.title for n in items] == ["New API token real"]


async def test_platform_admins_as_an_audience_and_dispatching_twice_tells_nobody_twice(world, smtp):
    from remotegpu.domain.notifications.models import Audience, Message, Severity

    admin, user = await world.user("root", admin=True), await world.user("plain")
    message = Message("environment.lost", Category.ENVIRONMENT, Severity.WARNING, Audience(admins=True), "event-1",
                      {"name": "x", "reason": "host gone"})
    dispatcher = world.container.notification_dispatcher()
    assert [n.user_id for n in await dispatcher.dispatch([message])] == [admin.id]
    assert await dispatcher.dispatch([message]) == []  # the same event again: already told
    await world.container.task_queue().drain()
    assert await world.container.notification_service().unread_count(admin.id) == 1
    assert await world.container.notification_service().unread_count(user.id) == 0
    assert len(smtp.inbox.to(admin.email)) == 1 and smtp.inbox.to(user.email) == []
