"""API throughput: GET /api/v1/users/me with a Bearer token, one server process.

Runs the real ``remotegpu serve`` on SQLite and on PostgreSQL (when
REMOTEGPU_BENCH_POSTGRES_URL is set, as .ci/run's services.sh prints), and a bare
aiohttp JSON handler as the baseline, all in the same run, under wrk at 50 and 200
connections. Prints a table. Aim (issue #2): ≥ 4,000 req/s and p99 < 50 ms at 200.

    .venv/bin/python bench/api.py [--duration 10]
"""

from __future__ import annotations

import argparse
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
from tests.support.live_server import free_port, live_server  # noqa: E402
from tests.support.postgres import reset_schema  # noqa: E402

CONNECTIONS = (50, 200)


def wrk(url: str, token: str | None, connections: int, duration: int) -> tuple[float, float, float]:
    cmd = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{duration}s", "--latency", url]
    if token:
        cmd[1:1] = ["-H", f"Authorization: Bearer {token}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise SystemExit(f"{non2xx.group(1)} requests failed during the benchmark:\n{out}")

    def pct(p: str) -> float:
        value, unit = re.search(rf"{p}%\s+([\d.]+)(us|ms|s)", out).groups()
        return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]

    return rps, pct("50"), pct("99")


def run_baseline(duration: int) -> list[tuple]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("baseline_server.py")), str(port)])
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/users/me", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        return [("bare aiohttp (baseline)", c, *wrk(f"http://127.0.0.1:{port}/api/v1/users/me", None, c, duration)) for c in CONNECTIONS]
    finally:
        proc.terminate()
        proc.wait()


def run_platform(label: str, duration: int, **env: str) -> list[tuple]:
    with tempfile.TemporaryDirectory() as tmp, live_server(Path(tmp), REMOTEGPU_LOG_LEVEL="WARNING", **env) as srv:
        token = srv.signup(f"bench{int(time.time())}")
        url = srv.url + "/api/v1/users/me"
        wrk(url, token, 10, 2)  # warm-up
        return [(label, c, *wrk(url, token, c, duration)) for c in CONNECTIONS]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("bench/api.py needs wrk: apt-get install -y wrk")
    rows = run_baseline(args.duration)
    rows += run_platform("remotegpu on SQLite", args.duration)
    pg = os.environ.get("REMOTEGPU_BENCH_POSTGRES_URL")
    if pg:
        reset_schema(pg)
        rows += run_platform("remotegpu on PostgreSQL", args.duration, REMOTEGPU_DATABASE_URL=pg)
    else:
        print("(PostgreSQL skipped: set REMOTEGPU_BENCH_POSTGRES_URL)")
    base = {c: rps for label, c, rps, *_ in rows if label.startswith("bare")}
    print(f"\nGET /api/v1/users/me, one server process, wrk -t1, {args.duration}s per row, {os.cpu_count()} CPUs")
    print(f"{'server':<28}{'conns':>6}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'vs baseline':>13}")
    for label, c, rps, p50, p99 in rows:
        print(f"{label:<28}{c:>6}{rps:>10.0f}{p50:>9.2f}{p99:>9.2f}{rps / base[c]:>12.0%}")


if __name__ == "__main__":
    main()
