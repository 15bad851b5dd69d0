"""Webhook fan-out: events × endpoints deliveries through the real dispatcher and the
SSRF-safe sender, against a local receiver in its own process.

Default: 100 events, each to 100 endpoints of one workspace = 10,000 signed deliveries
(``--events``/``--endpoints`` change it). For each store (memory, SQLite — and
PostgreSQL when REMOTEGPU_BENCH_POSTGRES_URL is set) it publishes every event and runs
``WebhookService.dispatch_due`` (what the server's dispatcher loop runs) until nothing
is due, then asks the receiver how many distinct (endpoint, webhook-id) pairs it got:
"lost" is what never arrived. The baseline, in the same run, is raw aiohttp POSTs of the
same bodies with the same concurrency to the same receiver. Aim (issue 17): ≥ 1,000
deliveries/s, none lost.

    .venv/bin/python bench/webhooks.py [--events 100] [--endpoints 100] [--stores memory,sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp  # noqa: E402

from remotegpu.adapters.webhooks.memory_store import InMemoryWebhookStore  # noqa: E402
from remotegpu.adapters.webhooks.sender import AiohttpWebhookSender  # noqa: E402
from remotegpu.application.shared.clock import SystemClock  # noqa: E402
from remotegpu.application.webhooks.service import WebhookService, event_body, new_message_id  # noqa: E402
from remotegpu.domain.webhooks import signing  # noqa: E402
from remotegpu.domain.webhooks.addresses import AddressPolicy, parse_cidrs  # noqa: E402
from remotegpu.domain.webhooks.models import DeliveryStatus, WebhookEndpoint  # noqa: E402
from tests.support.live_server import free_port  # noqa: E402

WORKSPACE = "00000000-0000-0000-0000-00000000b0b0"
CONCURRENCY = 200

# The receiver: its own process (so it does not share the sender's event loop), counting
# distinct (path, webhook-id) pairs; GET /count answers "<distinct> <requests>".
RECEIVER = r'''
import sys
from aiohttp import web
seen, hits = set(), [0]
async def hook(request):
    await request.read()
    hits[0] += 1
    seen.add((request.path, request.headers.get("webhook-id")))
    return web.Response(status=204)
async def count(request):
    return web.Response(text=f"{len(seen)} {hits[0]}")
async def reset(request):
    seen.clear(); hits[0] = 0
    return web.Response(text="ok")
app = web.Application()
app.router.add_post("/e/{n}", hook)
app.router.add_get("/count", count)
app.router.add_post("/reset", reset)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
'''


def receiver_count(base: str) -> tuple[int, int]:
    with urllib.request.urlopen(base + "/count", timeout=10) as r:
        distinct, hits = r.read().decode().split()
    return int(distinct), int(hits)


def receiver_reset(base: str) -> None:
    urllib.request.urlopen(urllib.request.Request(base + "/reset", method="POST"), timeout=10).read()


async def make_store(kind: str, tmp: Path):
    if kind == "memory":
        return InMemoryWebhookStore(), None
    import sqlalchemy as sa

    from remotegpu.adapters.security.sealer import AesGcmSealer
    from remotegpu.adapters.db import tables as t
    from remotegpu.adapters.db.engine import create_engine, create_session_factory
    from remotegpu.adapters.db.migrate import upgrade, upgrade_engine
    from remotegpu.adapters.webhooks.sql_store import SqlWebhookStore

    if kind == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp / 'bench.db'}"
        await asyncio.to_thread(upgrade, url)
        engine = create_engine(url)
    else:
        from tests.support.postgres import reset_schema

        url = os.environ["REMOTEGPU_BENCH_POSTGRES_URL"]
        await asyncio.to_thread(reset_schema, url)
        engine = create_engine(url)
        await upgrade_engine(engine)
    now = datetime.now(timezone.utc)
    async with engine.begin() as conn:
        await conn.execute(sa.insert(t.workspaces).values(id=WORKSPACE, name="bench", slug="bench", is_personal=False,
                                                          created_by="bench", created_at=now))
    return SqlWebhookStore(create_session_factory(engine), AesGcmSealer("bench-secret-0123456789abcdef")), engine


async def run_service(kind: str, base: str, events: int, endpoints: int, tmp: Path) -> tuple[float, int, int]:
    store, engine = await make_store(kind, tmp)
    sender = AiohttpWebhookSender(AddressPolicy(parse_cidrs("127.0.0.1/32")), pool_size=CONCURRENCY)
    service = WebhookService(uow=None, store=store, sender=sender, clock=SystemClock(), concurrency=CONCURRENCY)  # type: ignore[arg-type]
    now = datetime.now(timezone.utc)
    for n in range(endpoints):
        await store.add_endpoint(WebhookEndpoint(f"00000000-0000-0000-0000-{n:012d}", WORKSPACE, f"{base}/e/{n}",
                                                 signing.new_secret(), "bench", now, now))
    receiver_reset(base)
    total = events * endpoints
    start = time.perf_counter()
    for i in range(events):
        await service.publish(WORKSPACE, "environment.stopped", {"environment_id": f"env-{i}", "reason": "idle"})
    published = time.perf_counter() - start
    while await service.dispatch_due():
        pass
    elapsed = time.perf_counter() - start
    print(f"  ({kind}: publishing {published:.2f} s, sending {elapsed - published:.2f} s)")
    distinct, _ = receiver_count(base)
    if kind == "memory":
        succeeded = sum(1 for d in store.deliveries.values() if d.status is DeliveryStatus.SUCCEEDED)
    else:
        import sqlalchemy as sa

        from remotegpu.adapters.db import tables as t

        async with engine.connect() as conn:
            succeeded = (await conn.execute(sa.select(sa.func.count()).select_from(t.webhook_deliveries)
                                            .where(t.webhook_deliveries.c.status == "succeeded"))).scalar_one()
    await sender.close()
    if engine is not None:
        await engine.dispose()
    return total / elapsed, total - distinct, total - succeeded


async def run_baseline(base: str, events: int, endpoints: int) -> tuple[float, int]:
    """The same bodies and headers, POSTed by a bare aiohttp client with the same concurrency."""
    now = datetime.now(timezone.utc)
    secrets = [signing.new_secret() for _ in range(endpoints)]
    jobs = []
    for i in range(events):
        body = event_body("environment.stopped", {"environment_id": f"env-{i}", "reason": "idle"}, now)
        for n in range(endpoints):
            msg = new_message_id()
            jobs.append((f"{base}/e/{n}", signing.headers([secrets[n]], msg, int(now.timestamp()), body), body.encode()))
    receiver_reset(base)
    semaphore = asyncio.Semaphore(CONCURRENCY)
    failed = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY, limit_per_host=20)) as session:

        async def post(url: str, headers: dict, body: bytes) -> None:
            nonlocal failed
            async with semaphore:
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    failed += not 200 <= resp.status < 300

        start = time.perf_counter()
        await asyncio.gather(*(post(*job) for job in jobs))
        elapsed = time.perf_counter() - start
    distinct, _ = receiver_count(base)
    return len(jobs) / elapsed, len(jobs) - distinct + failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--endpoints", type=int, default=100)
    parser.add_argument("--stores", default="memory,sqlite" + (",postgres" if os.environ.get("REMOTEGPU_BENCH_POSTGRES_URL") else ""))
    args = parser.parse_args()
    port = free_port()
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port)])
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                receiver_count(base)
                break
            except OSError:
                time.sleep(0.1)
        total = args.events * args.endpoints
        print(f"{args.events} events x {args.endpoints} endpoints = {total} deliveries, concurrency {CONCURRENCY}, "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        rate, lost = asyncio.run(run_baseline(base, args.events, args.endpoints))
        print(f"{'baseline (raw aiohttp POSTs)':34} {rate:9.0f} deliveries/s   lost {lost}")
        with tempfile.TemporaryDirectory() as tmp:
            for kind in args.stores.split(","):
                rate, lost, not_succeeded = asyncio.run(run_service(kind, base, args.events, args.endpoints, Path(tmp)))
                print(f"{'webhooks, ' + kind + ' store':34} {rate:9.0f} deliveries/s   lost {lost}   not marked delivered {not_succeeded}")
    finally:
        receiver.terminate()
        receiver.wait(timeout=10)


if __name__ == "__main__":
    main()
