"""Support automations in production shape: Redis, a real `remotegpu worker` (Dramatiq).

The server does not run them when a Redis queue is configured; the worker's scheduler
enqueues ``support.sweep`` every REMOTEGPU_SUPPORT_SWEEP_INTERVAL_SECONDS and a Dramatiq
worker (two threads: sweeps may overlap) runs it. Tickets are seeded 10 days in the past:
a solved one is closed, an untouched high-priority one raises its SLA breach alerts — each
exactly once however many sweeps run (versioned saves, notification dedupe keys).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta

import pytest

from remotegpu.application.shared.clock import FrozenClock
from remotegpu.domain.shared.clock import utcnow
from remotegpu.domain.support.models import TicketStatus
from tests.support.components import redis_url

pytestmark = pytest.mark.redis


def _wait(predicate, what: str, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.5)


def test_the_worker_runs_the_support_automations_once(tmp_path):
    namespace = f"test-{uuid.uuid4().hex[:8]}"
    db = f"sqlite+aiosqlite:///{tmp_path / 's.db'}"
    common = {"REMOTEGPU_DATABASE_URL": db, "REMOTEGPU_REDIS_URL": redis_url(), "REMOTEGPU_DATA_DIR": str(tmp_path),
              "REMOTEGPU_SECRET_KEY": "k" * 40, "REMOTEGPU_REDIS_NAMESPACE": namespace, "REMOTEGPU_LOG_LEVEL": "WARNING",
              "REMOTEGPU_MAINTENANCE_INTERVAL_SECONDS": "3600", "REMOTEGPU_SUPPORT_SWEEP_INTERVAL_SECONDS": "1",
              "REMOTEGPU_SUPPORT_BUSINESS_HOURS": "24x7"}
    env = {**os.environ, **common}
    subprocess.run([sys.executable, "-m", "remotegpu.entrypoints.cli", "migrate"], env=env, check=True, capture_output=True)

    from remotegpu.entrypoints.config import load_settings
    from remotegpu.entrypoints.containers import build_container, close_container

    settings = load_settings(database_url=db, redis_url=common["REMOTEGPU_REDIS_URL"], redis_namespace=namespace, data_dir=tmp_path,
                             secret_key="k" * 40, password_hash_profile="fast", support_business_hours="24x7")

    async def seed() -> tuple[str, str, str]:
        container = build_container(settings)
        container.ticket_service.add_kwargs(clock=FrozenClock(utcnow() - timedelta(days=10)))
        try:
            admin = await container.admin_service().create_admin("helpdesk", "helpdesk@example.com", "long enough password")
            user = await container.auth_service().register("requester", "requester@example.com", "long enough password")
            tickets = container.ticket_service()
            solved = await tickets.create(user, subject="Done already", description="d")
            await tickets.solve(user, solved.id)
            waiting = await tickets.create(user, subject="Nobody answered", description="d", priority="high")
            return admin.id, solved.id, waiting.id
        finally:
            await close_container(container)

    async def state(admin_id: str, solved_id: str, waiting_id: str):
        container = build_container(settings)
        try:
            repo = container.ticket_repo()
            items, _, _ = await container.notification_service().inbox(admin_id, unread_only=False, limit=100, offset=0)
            return ((await repo.get(solved_id)).status, sorted((await repo.get(waiting_id)).sla_alerts),
                    sorted(n.kind for n in items if n.kind.startswith("support.sla")))
        finally:
            await close_container(container)

    admin_id, solved_id, waiting_id = asyncio.run(seed())
    before = asyncio.run(state(admin_id, solved_id, waiting_id))
    assert before[0] is TicketStatus.SOLVED and before[1] == [] and before[2] == []

    worker = subprocess.Popen([sys.executable, "-m", "remotegpu.entrypoints.cli", "worker", "--threads", "2"], env=env,
                              start_new_session=True)  # its own process group: killed whole, nothing left behind
    try:
        _wait(lambda: asyncio.run(state(admin_id, solved_id, waiting_id))[0] is TicketStatus.CLOSED,
              "the worker did not close the solved ticket")
        _wait(lambda: len(asyncio.run(state(admin_id, solved_id, waiting_id))[2]) == 2, "no SLA breach alerts")
        time.sleep(4)  # several more sweeps (one a second) run meanwhile
        status, alerts, notices = asyncio.run(state(admin_id, solved_id, waiting_id))
        assert status is TicketStatus.CLOSED
        assert alerts == ["first_response.breach", "resolution.breach"]
        assert notices == ["support.sla_breach", "support.sla_breach"]  # one per target, never repeated
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=30)
