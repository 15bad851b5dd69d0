"""Scheduler benchmark: pure placement speed and fragmentation, against first-fit.

Run: ``.venv/bin/python bench/scheduler.py [--quick]``

Rows
- pure placements/s: place + allocate over 1,000 hosts x 8 GPUs (two NVLink groups of
  4 each), kept at ~85% GPU use by releasing the oldest allocations; a mixed stream of
  1/2/4/8-GPU requests, half naming a model. Same request stream for both policies.
- committed placements/s on PostgreSQL: filled in by the allocation-store work
  (see ``committed_placements_per_s``); "n/a (pending)" until then.
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
import heapq
import random
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from remotegpu.domain.fleet.models import Host, parse_fake_gpus  # noqa: E402
from remotegpu.domain.scheduling import FleetState, Placement, PlacementRequest, first_fit, place  # noqa: E402

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


def committed_placements_per_s() -> float | None:
    """SLOT for the allocation-store engineer: placements/s committed on PostgreSQL
    (place + insert allocation rows in one transaction, retry on unique violation).
    Return None while the allocation tables do not exist."""
    return None


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
        heapq.heappush(departures, (now + rng.expovariate(1 / mean_duration), i, allocation))
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
    committed = committed_placements_per_s()
    ours = trace(place, n_hosts=100, n_arrivals=n_arrivals, seed=7)
    ff = trace(first_fit, n_hosts=100, n_arrivals=n_arrivals, seed=7)

    def gain(a: float, b: float) -> str:
        return f"{100 * (b - a) / b:+.0f}% fewer" if b else "-"

    rows = [
        ("metric", "best-fit (ours)", "first-fit", "note"),
        ("pure placements/s (1,000 hosts x 8 GPUs)", f"{ours_rate:,.0f}", f"{ff_rate:,.0f}", f"{n_requests:,} requests; placed {ours_placed:,} / {ff_placed:,}"),
        ("FleetState build (1,000 hosts), ms", f"{build_ms:.1f}", "", "paid once per snapshot"),
        ("committed placements/s on PostgreSQL", "n/a (pending)" if committed is None else f"{committed:,.0f}", "", "allocation tables pending"),
        ("stranded GPUs (mean, 100 x 8 trace)", f"{ours['stranded']:.1f}", f"{ff['stranded']:.1f}", gain(ours["stranded"], ff["stranded"])),
        ("8-GPU requests rejected", f"{ours['rejected_8']}", f"{ff['rejected_8']}", gain(ours["rejected_8"], ff["rejected_8"])),
        ("rejected with enough free GPUs in fleet", f"{ours['rejected_with_room']}", f"{ff['rejected_with_room']}", gain(ours["rejected_with_room"], ff["rejected_with_room"])),
        ("requests rejected (all sizes)", f"{ours['rejected']}", f"{ff['rejected']}", f"of {n_arrivals:,} arrivals"),
        ("multi-GPU placements split across NVLink", f"{ours['split_pct']:.1f}%", f"{ff['split_pct']:.1f}%", ""),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for n, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


if __name__ == "__main__":
    main()
