"""Email deliveries through the production path: Redis, a real `remotegpu worker` (Dramatiq), aiosmtpd.

The server side records the notification and enqueues its delivery; the worker sends
it. A worker killed (SIGKILL) while the SMTP server is accepting the message leaves
the delivery ``sending``; the job run again by a fresh worker sends nothing twice.
"""

from __future__ import annotations

import asyncio
import email
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from email import policy

import pytest
from aiosmtpd.controller import Controller

from remotegpu.domain.identity.models import RefreshToken
from remotegpu.domain.notifications.models import Channel, DeliveryStatus
from remotegpu.domain.shared.clock import utcnow
from tests.support.components import redis_url

pytestmark = pytest.mark.redis


class SlowInbox:
    """Accepts messages, but answers only after ``hold`` seconds (time to kill the sender)."""

    def __init__(self, hold: float):
        self.hold = hold
        self.messages: list = []
        self.arrived = threading.Event()

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
        self.arrived.set()
        await asyncio.sleep(self.hold)
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, what: str, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.3)


def test_worker_sends_once_even_when_killed_mid_send(tmp_path):
    inbox, port = SlowInbox(hold=30), _free_port()
    smtp = Controller(inbox, hostname="127.0.0.1", port=port)
    smtp.start()
    namespace = f"test-{uuid.uuid4().hex[:8]}"
    db = f"sqlite+aiosqlite:///{tmp_path / 'n.db'}"
    common = {"REMOTEGPU_DATABASE_URL": db, "REMOTEGPU_REDIS_URL": redis_url(), "REMOTEGPU_DATA_DIR": str(tmp_path),
              "REMOTEGPU_SECRET_KEY": "k" * 40, "REMOTEGPU_REDIS_NAMESPACE": namespace, "REMOTEGPU_LOG_LEVEL": "WARNING",
              "REMOTEGPU_SMTP_HOST": "127.0.0.1", "REMOTEGPU_SMTP_PORT": str(port), "REMOTEGPU_SMTP_SECURITY": "none",
              "REMOTEGPU_MAINTENANCE_INTERVAL_SECONDS": "3600"}
    env = {**os.environ, **common}
    subprocess.run([sys.executable, "-m", "remotegpu.entrypoints.cli", "migrate"], env=env, check=True, capture_output=True)

    from remotegpu.entrypoints.config import load_settings
    from remotegpu.entrypoints.containers import build_container, close_container

    settings = load_settings(database_url=db, redis_url=common["REMOTEGPU_REDIS_URL"], redis_namespace=namespace, data_dir=tmp_path,
                             secret_key="k" * 40, password_hash_profile="fast", smtp_host="127.0.0.1", smtp_port=port, smtp_security="none")

    async def seed() -> str:
        container = build_container(settings)
        user = await container.auth_service().register("mailer", "mailer@example.com", "long enough password")
        await container.account_service().create_api_token(user.id, "ci")  # a security notification → an email job on Redis
        await close_container(container)
        return user.id

    async def email_delivery(user_id: str):
        container = build_container(settings)
        items, _, _ = await container.notification_service().inbox(user_id, unread_only=False, limit=5, offset=0)
        deliveries = await container.notification_repo().list_deliveries(items[0].id)
        await close_container(container)
        return next(d for d in deliveries if d.channel is Channel.EMAIL)

    async def enqueue_again(delivery_id: str, user_id: str) -> None:
        """The delivery job again, then a marker job whose effect shows the worker got past it
        (one worker thread takes them in order): purging an expired refresh token."""
        container = build_container(settings)
        async with container.uow() as uow:
            await uow.refresh_tokens.add(RefreshToken(
                id=str(uuid.uuid4()), user_id=user_id, family_id="f", token_hash="h" * 64,
                created_at=utcnow() - timedelta(days=30), expires_at=utcnow() - timedelta(days=1),
            ))
            await uow.commit()
        await container.task_queue().enqueue("notifications.deliver", delivery_id=delivery_id)
        await container.task_queue().enqueue("identity.purge_expired_refresh_tokens")
        await close_container(container)

    async def marker_done() -> bool:
        container = build_container(settings)
        async with container.uow() as uow:
            found = await uow.refresh_tokens.get_by_hash("h" * 64)
        await close_container(container)
        return found is None

    def start_worker():
        return subprocess.Popen([sys.executable, "-m", "remotegpu.entrypoints.cli", "worker", "--threads", "1"], env=env,
                                start_new_session=True)  # its own process group: killed whole, nothing left behind

    def kill(worker) -> None:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)

    user_id = asyncio.run(seed())
    worker = start_worker()
    try:
        _wait(inbox.arrived.is_set, "the worker did not send the email")
        kill(worker)  # mid-send: the SMTP server has the message, the worker never heard "250"
        delivery = asyncio.run(email_delivery(user_id))
        assert delivery.status is DeliveryStatus.SENDING and delivery.attempts == 1
        message = inbox.messages[0]
        assert message["To"] == "mailer@example.com" and message.get_content_type() == "multipart/alternative"
        assert message["Message-ID"].startswith(f"<{delivery.idempotency_key}@")

        inbox.hold = 0
        asyncio.run(enqueue_again(delivery.id, user_id))  # run again, as a broker redelivers a dead worker's message
        worker = start_worker()
        _wait(lambda: asyncio.run(marker_done()), "the worker did not get past the delivery job")
        time.sleep(2)  # time for a wrong second send to arrive
        assert len(inbox.messages) == 1
        assert asyncio.run(email_delivery(user_id)).status is DeliveryStatus.SENDING  # never resent; the sweep marks it unknown
    finally:
        kill(worker)
        smtp.stop()

