"""API throughput of the hot endpoints, one server process, on seeded data of realistic size.

Seeds (bench/seed.py) 1,000 users, 200 workspaces, 100 hosts x 8 GPUs and 2,000
environments straight into the database, then runs the real ``remotegpu serve`` on it
— SQLite, and PostgreSQL when REMOTEGPU_BENCH_POSTGRES_URL is set (as .ci/run's
services.sh prints) — and measures with wrk, as the bench user (owner of a workspace
of 50 environments, member of two more):

    users/me      GET /api/v1/users/me                        (reference: no database)
    env list      GET /api/v1/environments?workspace_id=W&limit=50
    env detail    GET /api/v1/environments/E
    env events    GET /api/v1/environments/E/events
    workspaces    GET /api/v1/workspaces
    gpu-types     GET /api/v1/gpu-types
    quota         GET /api/v1/workspaces/W/quota

The hot reads are cached per change epoch (application/shared/read_cache.py): wrk
repeating one request measures the cached path (one statement: the membership check,
which reads the epoch with it, straight on the driver: adapters/db/hot_reads.py).
The server's own background work (sweeps, the service scaler) counts in its CPU too:
on a fleet this size an idle server must stay near idle. ``+chg`` rows repeat env-list and gpu-types while
another process changes environments ``--churn`` times a second (default 10): each
change moves the epoch and the next request rebuilds the answer.

Baselines, in the same run: bare aiohttp answering a constant document, and (with
PostgreSQL) bare aiohttp + asyncpg running the environment list's three queries
(bench/baseline_server.py). The aim (issue #12): every hot endpoint >= 3,000 req/s with
p99 < 50 ms at 50 connections on PostgreSQL, >= 2,000 on SQLite. The table says how
loaded the machine was (load average before and after): compare rows of one run,
not runs of different days.

    .venv/bin/python bench/api.py [--duration 10] [--connections 50 200] [--quick] [--only env-list,gpu-types] [--churn 10]

wrk is a Debian package (apt-get install -y wrk); the bench needs it, no test does.
"""

from __future__ import annotations

import argparse
import asyncio
from contextlib import contextmanager
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.seed import counts, seed  # noqa: E402
from tests.support.live_server import free_port, live_server  # noqa: E402
from tests.support.postgres import reset_schema  # noqa: E402

# The seeded hosts never heartbeat: give them an hour before they count as offline, and
# no embedded agent (its host would be the only one that changes during the run).
SERVER_ENV = {"REMOTEGPU_LOG_LEVEL": "WARNING", "REMOTEGPU_HEARTBEAT_SECONDS": "300", "REMOTEGPU_EMBEDDED_AGENT": "false"}


def endpoints(workspace_id: str, env_id: str) -> dict[str, str]:
    return {
        "users/me": "/api/v1/users/me",
        "env-list": f"/api/v1/environments?workspace_id={workspace_id}&limit=50",
        "env-detail": f"/api/v1/environments/{env_id}",
        "env-events": f"/api/v1/environments/{env_id}/events",
        "workspaces": "/api/v1/workspaces",
        "gpu-types": "/api/v1/gpu-types",
        "quota": f"/api/v1/workspaces/{workspace_id}/quota",
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU the process has used (Linux): what a request costs, whatever else loads the machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(url: str, token: str | None, connections: int, duration: float, pid: int) -> tuple[float, float, float, float]:
    """(req/s, p50 ms, p99 ms, server CPU ms per request)."""
    before = cpu_seconds(pid)
    rps, p50, p99, requests = wrk(url, token, connections, duration)
    return rps, p50, p99, (cpu_seconds(pid) - before) * 1000 / max(requests, 1)


def wrk(url: str, token: str | None, connections: int, duration: float) -> tuple[float, float, float, int]:
    cmd = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{duration:g}s", "--timeout", "10s", "--latency", url]
    if token:
        cmd[1:1] = ["-H", f"Authorization: Bearer {token}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise SystemExit(f"{non2xx.group(1)} requests failed during the benchmark of {url}:\n{out}")
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    if requests == 0 or "Socket errors" in out:
        print(f"wrk reported errors for {url} at {connections} connections:\n{out}", file=sys.stderr)

    def pct(p: str) -> float:
        value, unit = re.search(rf"{p}%\s+([\d.]+)(us|ms|s)", out).groups()
        return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]

    return rps, pct("50"), pct("99"), requests


def check(url: str, token: str | None) -> None:
    """One request first: a wrong URL fails here with its answer, not as a wrk count."""
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 200, resp.status


def run_baseline(args, pg: str | None, seeded) -> list[tuple]:
    port = free_port()
    cmd = [sys.executable, str(Path(__file__).with_name("baseline_server.py")), str(port)] + ([pg] if pg else [])
    proc = subprocess.Popen(cmd)
    rows = []
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                urllib.request.urlopen(base + "/api/v1/users/me", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        targets = {"users/me": "/api/v1/users/me"}
        if pg:
            targets["env-list"] = f"/api/v1/environments?workspace_id={seeded.workspace_id}&limit=50"
        for name, path in targets.items():
            if name not in args.only:
                continue
            check(base + path, None)
            wrk(base + path, None, 10, 1)  # warm-up
            for c in args.connections:
                label = "bare aiohttp" if name == "users/me" else "bare aiohttp+asyncpg"
                rows.append((label, name, c, *measure(base + path, None, c, args.duration, proc.pid)))
    finally:
        proc.terminate()
        proc.wait()
    return rows


def run_platform(label: str, args, database_url: str, data_dir: Path, reset) -> tuple[list[tuple], object]:
    reset()
    env = {**SERVER_ENV, "REMOTEGPU_DATABASE_URL": database_url}
    subprocess.run([sys.executable, "-m", "remotegpu.entrypoints.cli", "migrate"],
                   env={**os.environ, "REMOTEGPU_DATA_DIR": str(data_dir), **env}, check=True, capture_output=True)
    seeded = asyncio.run(seed(database_url.replace("postgresql://", "postgresql+asyncpg://", 1)))
    rows = []
    with live_server(data_dir, **env) as srv:
        token = srv.login(seeded.username, seeded.password)
        for name, path in endpoints(seeded.workspace_id, seeded.environment_id).items():
            if name not in args.only:
                continue
            check(srv.url + path, token)
            wrk(srv.url + path, token, 10, 1)  # warm-up
            for c in args.connections:
                rows.append((label, name, c, *measure(srv.url + path, token, c, args.duration, srv.process.pid)))
            if args.churn and name in CHURNED:
                # The same, while other environments change args.churn times a second: every
                # change moves the change epoch, so cached answers are rebuilt as they must be.
                with churning(database_url, seeded, args.churn):
                    for c in args.connections:
                        rows.append((label, f"{name}+chg", c, *measure(srv.url + path, token, c, args.duration, srv.process.pid)))
                time.sleep(2)  # what the last connections left queued is answered before the next row
    return rows, seeded


#: Endpoints also measured while environments change (--churn).
CHURNED = ("env-list", "gpu-types")


@contextmanager
def churning(database_url: str, seeded, per_second: float):
    """A process renaming environments of the bench workspace ``per_second`` times a second
    (straight UPDATEs: the triggers move the change epoch as any use case's commit does)."""
    code = f"""
import asyncio, itertools, sys, time
from sqlalchemy import text
from remotegpu.adapters.db.engine import create_engine
async def main():
    engine = create_engine({database_url!r})
    async with engine.connect() as conn:
        ids = [r[0] for r in await conn.execute(text("SELECT id FROM environments WHERE workspace_id = :w"), {{"w": {seeded.workspace_id!r}}})]
    for n in itertools.count():
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE environments SET status_message = :m WHERE id = :i"), {{"m": f"churn {{n}}", "i": ids[n % len(ids)]}})
        await asyncio.sleep({1 / per_second!r})
asyncio.run(main())
"""
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        time.sleep(1)
        yield
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10, help="seconds per row (default 10)")
    parser.add_argument("--connections", type=int, nargs="+", default=[50], help="wrk connections (default 50)")
    parser.add_argument("--quick", action="store_true", help="3 s per row: the whole bench in about two minutes")
    parser.add_argument("--only", default=",".join(endpoints("W", "E")), help="comma-separated endpoint names")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--churn", type=float, default=10,
                        help="also measure env-list and gpu-types while this many environments change per second (0: not)")
    args = parser.parse_args()
    if args.quick:
        args.duration = 3
    args.only = set(args.only.split(","))
    if shutil.which("wrk") is None:
        raise SystemExit("bench/api.py needs wrk, which is not installed: apt-get install -y wrk")
    load_before = os.getloadavg()
    started = time.monotonic()
    rows: list[tuple] = []
    pg = os.environ.get("REMOTEGPU_BENCH_POSTGRES_URL")
    seeded = None
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_sqlite:
            db = Path(tmp) / "sqlite"
            db.mkdir()
            found, seeded = run_platform("remotegpu SQLite", args, f"sqlite+aiosqlite:///{db / 'bench.db'}", db, lambda: None)
            rows += found
        if pg:
            pgdir = Path(tmp) / "pg"
            pgdir.mkdir()
            found, seeded = run_platform("remotegpu PostgreSQL", args, pg, pgdir, lambda: reset_schema(pg))
            rows += found
        else:
            print("(PostgreSQL skipped: set REMOTEGPU_BENCH_POSTGRES_URL)")
    # The baseline reads the PostgreSQL data the last platform run seeded (it is still there).
    rows = run_baseline(args, pg, seeded) + rows if seeded is not None else rows
    load_after = os.getloadavg()

    print(f"\nHot endpoints, one server process, wrk -t1, {args.duration:g} s per row, {os.cpu_count()} CPUs, "
          f"load average {load_before[0]:.1f} before / {load_after[0]:.1f} after, {time.monotonic() - started:.0f} s in all")
    print("seeded: " + ", ".join(f"{v:,} {k}" for k, v in counts().items()))
    # Each platform row against the bare baseline of its own database (users/me: bare aiohttp).
    base = {(label.startswith("bare aiohttp+"), name, c): rps for label, name, c, rps, *_ in rows if label.startswith("bare")}
    print("CPU ms/req: the server process's own CPU time per request (PostgreSQL's not included); 1000 / it is\n"
          "what one otherwise idle core could answer, the figure least moved by other load on the machine.")
    print(f"{'server':<24}{'endpoint':<12}{'conns':>6}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'CPU ms/req':>11}{'vs bare':>9}")
    for label, name, c, rps, p50, p99, cpu in rows:
        with_db = name != "users/me"  # compared with bare aiohttp+asyncpg, on PostgreSQL only
        ref = base.get((with_db, name, c)) if not with_db or "PostgreSQL" in label else None
        ratio = f"{rps / ref:>8.0%}" if ref and not label.startswith("bare") else ""
        print(f"{label:<24}{name:<12}{c:>6}{rps:>9.0f}{p50:>9.2f}{p99:>9.2f}{cpu:>11.3f}{ratio:>9}")


if __name__ == "__main__":
    main()
