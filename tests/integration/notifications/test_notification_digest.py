"""Digests with a real SMTP server (aiosmtpd): a user who batches a category gets its
info-level emails as one digest per period (warnings and critical ones at once), others
get each email; memory, SQLite and PostgreSQL (the SQL repository and migration 0021)."""

from __future__ import annotations

from datetime import datetime, timezone

from remotegpu.domain.notifications.models import Audience, Category, Channel, DeliveryStatus, Message, Severity
from remotegpu.domain.notifications.preferences import NotificationPreferences
from remotegpu.domain.support import messages as _support  # noqa: F401 - registers the support.* templates
from tests.integration.notifications.test_notification_email import smtp, world  # noqa: F401 - the fixtures

T0 = datetime(2026, 11, 30, 9, 20, tzinfo=timezone.utc)


def _reply(n: int, user_id: str, severity: Severity = Severity.INFO) -> Message:
    return Message("support.reply", Category.SUPPORT, severity, Audience(user_ids=(user_id,)), f"digest-test-{n}",
                   {"subject": f"Ticket {n}", "excerpt": f"answer {n}"}, f"/tickets/t{n}")


async def test_info_emails_of_a_digest_category_come_as_one_email_per_period(world, smtp):
    world.clock._now = T0
    alice, bob = await world.user("alice"), await world.user("bob")
    await world.container.notification_service().set_preferences(
        NotificationPreferences(alice.id, digest={Category.SUPPORT}, digest_period="hourly"))
    dispatcher, deliveries = world.container.notification_dispatcher(), world.container.delivery_service()

    for batch in ([_reply(1, alice.id), _reply(11, bob.id)], [_reply(2, alice.id), _reply(3, alice.id, Severity.WARNING)],
                  [_reply(4, alice.id), _reply(12, bob.id)]):
        await dispatcher.dispatch(batch)
        world.clock.advance(minutes=1)
    await world.container.task_queue().drain()
    # Alice: only the warning now (and all four in her inbox); bob: each email.
    assert [m["Subject"] for m in smtp.inbox.to(alice.email)] == ["Reply on your ticket: Ticket 3"]
    assert len(smtp.inbox.to(bob.email)) == 2
    assert (await world.container.notification_service().unread_count(alice.id)) == 4

    world.clock.advance(minutes=36)  # 09:59: not yet
    await deliveries.send_due()
    assert len(smtp.inbox.to(alice.email)) == 1
    world.clock.advance(minutes=1)  # 10:00 (her time zone is UTC)
    await deliveries.send_due()
    await deliveries.send_due()  # nothing twice
    mails = smtp.inbox.to(alice.email)
    assert len(mails) == 2
    digest = mails[1]
    assert digest["Subject"] == "Your RemoteGPU digest: 3 notifications"
    text = digest.get_body(("plain",)).get_content()
    assert [t in text for t in ("Ticket 1", "Ticket 2", "Ticket 4")] == [True, True, True] and "Ticket 3" not in text
    assert text.index("Ticket 1") < text.index("Ticket 2") < text.index("Ticket 4")
    assert "https://gpu.example/tickets/t1" in digest.get_body(("html",)).get_content()
    repo = world.container.notification_repo()
    items, _ = await repo.list_for_user(alice.id, unread_only=False, limit=10, offset=0)
    emails = [d for n in items for d in await repo.list_deliveries(n.id) if d.channel is Channel.EMAIL]
    assert [d.status for d in emails] == [DeliveryStatus.SENT] * 4
