"""Scheduler benchmark: pure placement speed and fragmentation, against first-fit.

Run: ``.venv/bin/python bench/scheduler.py [--quick]``

Rows
- pure placements/s: place + allocate over 1,000 hosts x 8 GPUs (two NVLink groups of
  4 each), kept at ~85% GPU use by releasing the oldest allocations; a mixed stream of
  1/2/4/8-GPU requests, half naming a model. Same request stream for both policies.
- committed placements/s on PostgreSQL (REMOTEGPU_BENCH_POSTGRES_URL; skipped when
  unset): one unit of work per 1-GPU placement over 1,000 stored hosts x 8 GPUs —
  scheduling lock, live allocations read, FleetState built, place, insert, commit.
  See ``committed_placements_per_s`` for what is cached.
- stranded GPUs: a synthetic trace (100 hosts x 8 GPUs, Poisson arrivals, exponential
  durations, sizes 1/2/4/8 at 40/25/20/15%, offered load ~90%, no queue: a request
  that does not fit is rejected). **Stranded GPUs = free GPUs sitting on hosts that
  cannot take an 8-GPU request** (hosts with 1-7 free GPUs), averaged over every
  arrival. Lower is better: those GPUs are idle yet useless to the largest requests.
  Also shown: 8-GPU requests rejected, requests rejected although the fleet had that
  many GPUs free in total, and multi-GPU placements split across NVLink groups.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import os
import random
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sqlalchemy import text  # noqa: E402

from remotegpu.adapters.db.engine import create_engine, create_session_factory  # noqa: E402
from remotegpu.adapters.db.migrate import upgrade_engine  # noqa: E402
from remotegpu.adapters.db.uow import SqlUnitOfWork  # noqa: E402
from remotegpu.domain.environments.models import Environment, GpuAllocation  # noqa: E402
from remotegpu.domain.fleet.models import Host, parse_fake_gpus  # noqa: E402
from remotegpu.domain.scheduling import Allocation, FleetState, Placement, PlacementRequest, first_fit, place  # noqa: E402

Policy = Callable[[FleetState, PlacementRequest], "Placement | None"]
MODELS = ("NVIDIA A100-SXM4-80GB", "NVIDIA H100 80GB HBM3")
SIZES, WEIGHTS = (1, 2, 4, 8), (0.40, 0.25, 0.20, 0.15)


def make_fleet(n_hosts: int, *, mixed_models: bool) -> list[Host]:
    hosts = []
    for i in range(n_hosts):
        model = MODELS[i % 2] if mixed_models else MODELS[0]
        hosts.append(
            Host(
                id=f"h{i:04d}",
                name=f"gpu-{i:04d}",
                labels={"zone": "a" if i % 3 else "b"},
                cpu_cores=128,
                memory_gib=1024,
                gpus=parse_fake_gpus(f"8x{model}", seed=f"h{i}"),
            )
        )
    return hosts


def request_stream(n: int, seed: int) -> list[PlacementRequest]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        size = rng.choices(SIZES, WEIGHTS)[0]
        out.append(
            PlacementRequest(
                gpu_count=size,
                gpu_model=rng.choice(MODELS) if rng.random() < 0.5 else None,
                cpu_cores=8 * size,
                memory_gib=64 * size,
            )
        )
    return out


def throughput(policy: Policy, hosts: list[Host], requests: list[PlacementRequest]) -> tuple[float, int]:
    fleet = FleetState(hosts)
    total_gpus = sum(len(h.gpus) for h in hosts)
    live: deque = deque()
    used = 0
    placed = 0
    start = time.perf_counter()
    for request in requests:
        while used > 0.85 * total_gpus:
            old = live.popleft()
            fleet.release(old)
            used -= len(old.gpu_uuids)
        placement = policy(fleet, request)
        if placement is not None:
            allocation = placement.allocation(request)
            fleet.allocate(allocation)
            live.append(allocation)
            used += len(allocation.gpu_uuids)
            placed += 1
    elapsed = time.perf_counter() - start
    return len(requests) / elapsed, placed


def committed_placements_per_s(n_placements: int = 1_000) -> float | None:
    """Placements/s committed on PostgreSQL (REMOTEGPU_BENCH_POSTGRES_URL; None if unset).

    1,000 hosts x 8 GPUs are stored through the repositories in a private schema. Each
    placement is one unit of work: lock_scheduling, read every live GPU allocation,
    bring the FleetState up to date with them, place one 1-GPU request, add_gpus, commit.

    Cached across transactions: the host list (hosts rarely change; a real scheduler
    reloads it when the fleet changes) and the FleetState built from it, which is
    brought up to date by diffing the allocations just read against those it already
    reflects (``_LiveFleet``) — same result as a rebuild, which costs ~6-12 ms for
    1,000 hosts and alone would cap this at <150/s. Nothing about allocations is
    trusted from memory: they are read fresh under the lock every time. The
    environments being placed are created beforehand (they were queued).
    """
    url = os.environ.get("REMOTEGPU_BENCH_POSTGRES_URL")
    if not url:
        print("(committed placements/s skipped: set REMOTEGPU_BENCH_POSTGRES_URL, see ./deploy/ci/services.sh)")
        return None
    return asyncio.run(_committed_placements(url, n_placements))


class _LiveFleet:
    """A FleetState over cached hosts, synced to the live allocations read each time."""

    def __init__(self, hosts: list[Host]):
        self.fleet = FleetState(hosts)
        self._applied: dict[str, Allocation] = {}  # environment id → what the fleet reflects

    def sync(self, rows: list[GpuAllocation]) -> FleetState:
        grouped: dict[str, tuple[str, list[str]]] = {}
        for row in rows:
            grouped.setdefault(row.environment_id, (row.host_id, []))[1].append(row.gpu_uuid)
        live = {env_id: Allocation(host_id, tuple(sorted(uuids))) for env_id, (host_id, uuids) in grouped.items()}
        for env_id, allocation in self._applied.items():
            if live.get(env_id) != allocation:
                self.fleet.release(allocation)
        for env_id, allocation in live.items():
            if self._applied.get(env_id) != allocation:
                self.fleet.allocate(allocation)
        self._applied = live
        return self.fleet


async def _committed_placements(url: str, n_placements: int) -> float:
    schema = f"bench_sched_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url)
    async with admin.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = create_engine(url, connect_args={"server_settings": {"search_path": schema}})
    try:
        await upgrade_engine(engine)
        sessions = create_session_factory(engine)
        env_ids = await _store_fleet_and_queue(lambda: SqlUnitOfWork(sessions), n_placements)
        async with SqlUnitOfWork(sessions) as uow:
            live = _LiveFleet(await uow.hosts.list())  # the host cache: read once
        request = PlacementRequest(gpu_count=1)
        start = time.perf_counter()
        for env_id in env_ids:
            async with SqlUnitOfWork(sessions) as uow:
                await uow.lock_scheduling()
                placement = place(live.sync(await uow.allocations.gpus()), request)
                await uow.allocations.add_gpus([GpuAllocation(env_id, placement.host_id, u) for u in placement.gpu_uuids])
                await uow.commit()
        return n_placements / (time.perf_counter() - start)
    finally:
        await engine.dispose()
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


async def _store_fleet_and_queue(uow_factory, n_envs: int) -> list[str]:
    now = datetime.now(timezone.utc)
    async with uow_factory() as uow:
        for host in make_fleet(1_000, mixed_models=True):
            await uow.hosts.add(host)
        envs = [
            Environment(
                id=str(uuid.uuid4()), name=f"bench-{i}", workspace_id="bench", owner_id="bench", image="img",
                gpu_count=1, gpu_model=None, cpu_cores=1, memory_gib=1, created_at=now, updated_at=now,
            )
            for i in range(n_envs)
        ]
        for env in envs:
            await uow.environments.add(env)
        await uow.commit()
    return [env.id for env in envs]


def trace(policy: Policy, *, n_hosts: int, n_arrivals: int, seed: int) -> dict[str, float]:
    hosts = make_fleet(n_hosts, mixed_models=False)
    fleet = FleetState(hosts)
    groups = {g.uuid: g.nvlink_group for h in hosts for g in h.gpus}
    rng = random.Random(seed)
    total_gpus = 8 * n_hosts
    mean_size = sum(s * w for s, w in zip(SIZES, WEIGHTS))
    mean_duration = 100.0
    rate = 0.9 * total_gpus / (mean_size * mean_duration)  # offered load ~90%
    departures: list[tuple[float, int, object]] = []
    now = 0.0
    stranded_sum = 0
    rejected = rejected_8 = rejected_with_room = split = multi = 0
    for i in range(n_arrivals):
        now += rng.expovariate(rate)
        while departures and departures[0][0] <= now:
            fleet.release(heapq.heappop(departures)[2])
        free_total = 0
        for host in fleet.hosts():
            free = host.free_count()
            free_total += free
            if free < 8:
                stranded_sum += free
        size = rng.choices(SIZES, WEIGHTS)[0]
        # Drawn for every arrival, placed or not, so both policies see the very same
        # trace (drawing it only on success shifted the stream after a rejection).
        duration = rng.expovariate(1 / mean_duration)
        request = PlacementRequest(gpu_count=size)
        placement = policy(fleet, request)
        if placement is None:
            rejected += 1
            rejected_8 += size == 8
            rejected_with_room += free_total >= size
            continue
        if size > 1:
            multi += 1
            split += len({groups[u] for u in placement.gpu_uuids}) > 1
        allocation = placement.allocation(request)
        fleet.allocate(allocation)
        heapq.heappush(departures, (now + duration, i, allocation))
    return {
        "stranded": stranded_sum / n_arrivals,
        "rejected": rejected,
        "rejected_8": rejected_8,
        "rejected_with_room": rejected_with_room,
        "split_pct": 100.0 * split / max(multi, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller runs (smoke test)")
    args = parser.parse_args()
    n_requests = 2_000 if args.quick else 20_000
    n_arrivals = 5_000 if args.quick else 40_000

    hosts = make_fleet(1_000, mixed_models=True)
    t0 = time.perf_counter()
    FleetState(hosts)
    build_ms = (time.perf_counter() - t0) * 1000
    requests = request_stream(n_requests, seed=1)
    ours_rate, ours_placed = throughput(place, hosts, requests)
    ff_rate, ff_placed = throughput(first_fit, hosts, requests)
    committed = committed_placements_per_s(300 if args.quick else 1_000)
    ours = trace(place, n_hosts=100, n_arrivals=n_arrivals, seed=7)
    ff = trace(first_fit, n_hosts=100, n_arrivals=n_arrivals, seed=7)

    def gain(a: float, b: float) -> str:
        return f"{100 * (b - a) / b:+.0f}% fewer" if b else "-"

    rows = [
        ("metric", "ours (busiest, best fit)", "first-fit", "note"),
        ("pure placements/s (1,000 hosts x 8 GPUs)", f"{ours_rate:,.0f}", f"{ff_rate:,.0f}", f"{n_requests:,} requests; placed {ours_placed:,} / {ff_placed:,}"),
        ("FleetState build (1,000 hosts), ms", f"{build_ms:.1f}", "", "paid once per snapshot"),
        ("committed placements/s on PostgreSQL", "n/a (no PostgreSQL)" if committed is None else f"{committed:,.0f}", "", "1 GPU each; lock + read allocations + place + insert + commit"),
        ("stranded GPUs (mean, 100 x 8 trace)", f"{ours['stranded']:.1f}", f"{ff['stranded']:.1f}", gain(ours["stranded"], ff["stranded"])),
        ("8-GPU requests rejected", f"{ours['rejected_8']}", f"{ff['rejected_8']}", gain(ours["rejected_8"], ff["rejected_8"])),
        ("rejected with enough free GPUs in fleet", f"{ours['rejected_with_room']}", f"{ff['rejected_with_room']}", gain(ours["rejected_with_room"], ff["rejected_with_room"])),
        ("requests rejected (all sizes)", f"{ours['rejected']}", f"{ff['rejected']}", f"of {n_arrivals:,} arrivals"),
        ("multi-GPU placements split across NVLink", f"{ours['split_pct']:.1f}%", f"{ff['split_pct']:.1f}%", "incl. 8-GPU requests, which always span both groups of 4"),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for n, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


if __name__ == "__main__":
    main()
