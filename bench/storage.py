"""Storage throughput: the platform's path vs the bare ``minio`` client, same S3 server, same run.

One moto server (S3, its own process; MinIO itself cannot be installed here) holds two
buckets. The bare baseline is the ``minio`` client's fput_object / fget_object (16 MiB
parts). The platform's path is what ``remotegpu dataset push|pull`` does against a real
``remotegpu serve`` (SQLite, S3 backend on the same moto): hash the file, parts straight
to S3 by presigned URLs, the server re-reads and verifies sha256, commit; pull by
presigned URL and verify. Also the proxied download (bytes through the platform), many
small files (push sends them in batches through the platform, verified on the way; pull
asks for 1,000 URLs per call; bare: 4 threads of fput/fget_object), and the host mount
cache: a version materialized cold (download + verify + hard links) vs cached.
Aim (issue 14): platform ≥ 90 % of bare. Bare and platform alternate which goes first.
Each row also gives the CPU seconds per GiB of this process (client), the platform's
server and the S3 server together: on 2 shared cores the wall time follows the other
engineers' load, the CPU seconds much less.

    .venv/bin/python bench/storage.py [--size-mib 256] [--runs 3] [--small-files 200] [--server moto|s3rver]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp  # noqa: E402

from remotegpu.adapters.storage.mount_cache import CachedFile, MountCache  # noqa: E402
from remotegpu.adapters.storage.s3_store import S3Config, S3ObjectStore  # noqa: E402
from remotegpu.domain.storage.models import blob_key  # noqa: E402
from remotegpu.entrypoints import storage_cli  # noqa: E402
from tests.support.live_server import live_server  # noqa: E402
from tests.support.s3servers import s3_server  # noqa: E402

MiB = 1024 * 1024


def _generate(path: Path, size: int, seed: int) -> None:
    block = os.urandom(MiB)
    with open(path, "wb") as f:
        for i in range(size // MiB):
            f.write(block[i % 997:] + block[: i % 997] if i else hashlib.sha256(str(seed).encode()).digest() + block[32:])


def _rate(size: int, seconds: float) -> str:
    return f"{size / MiB / seconds:7.1f} MiB/s ({seconds:6.2f} s)"


def _proc_cpu(pid: int) -> float:
    """user+system CPU seconds of one process (all its threads)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Meter:
    """Wall time and the CPU seconds spent by everyone involved: this process (the bare
    client, the CLI), the platform's server and the S3 server. On 2 shared cores the wall
    time follows the machine's load; the CPU seconds do not."""

    def __init__(self, pids: list[int]):
        self.pids = pids
        self.wall: dict[str, list[float]] = {}
        self.cpu: dict[str, list[float]] = {}

    def _cpu(self) -> float:
        return time.process_time() + sum(_proc_cpu(p) for p in self.pids)

    async def measure(self, name: str, work) -> None:
        c, t = self._cpu(), time.perf_counter()
        await work
        self.wall.setdefault(name, []).append(time.perf_counter() - t)
        self.cpu.setdefault(name, []).append(self._cpu() - c)


def _children() -> list[int]:
    pid = os.getpid()
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--parallel", type=int, default=4, help="parts/files in flight (the CLI's --parallel)")
    parser.add_argument("--small-files", type=int, default=200, help="files of --small-kib in the many-files rows (0: none)")
    parser.add_argument("--small-kib", type=int, default=64)
    parser.add_argument("--server", choices=("moto", "s3rver"), default="moto")
    args = parser.parse_args()
    size = args.size_mib * MiB
    small_total = args.small_files * args.small_kib * 1024
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-storage-") as tmp, s3_server(args.server) as s3:
        tmp_path = Path(tmp)
        s3_pids = _children()
        storage_cli.STATE_DIR = tmp_path / "state"
        bare = S3ObjectStore(S3Config(s3.endpoint, "bench-bare", s3.access_key, s3.secret_key, s3.region, "path"))
        await bare.ensure_ready()
        env = dict(REMOTEGPU_STORAGE_BACKEND="s3", REMOTEGPU_S3_ENDPOINT=s3.endpoint, REMOTEGPU_S3_BUCKET="bench-platform",
                   REMOTEGPU_S3_ACCESS_KEY=s3.access_key, REMOTEGPU_S3_SECRET_KEY=s3.secret_key, REMOTEGPU_S3_REGION=s3.region,
                   REMOTEGPU_S3_ADDRESSING="path", REMOTEGPU_RUNTIME="memory")
        with live_server(tmp_path / "server", **env) as server:
            meter = Meter(s3_pids + [server.process.pid])
            token = server.login("admin", "admin-password-123")
            async with aiohttp.ClientSession() as session:
                api = storage_cli.Api(server.url, token, session)
                ws = await api.workspace(None)
                await api.call("POST", "/api/v1/datasets", json_body={"workspace_id": ws, "name": "bench"})
                repo = await api.repository("dataset", ws, "bench")

                def bare_put_many(directory: Path, prefix: str) -> None:
                    from concurrent.futures import ThreadPoolExecutor
                    with ThreadPoolExecutor(args.parallel) as pool:
                        list(pool.map(lambda f: bare.client.fput_object("bench-bare", f"{prefix}/{f.name}", str(f)),
                                      sorted(directory.iterdir())))

                def bare_get_many(prefix: str, directory: Path) -> None:
                    from concurrent.futures import ThreadPoolExecutor
                    names = [o.object_name for o in bare.client.list_objects("bench-bare", prefix=prefix + "/")]
                    with ThreadPoolExecutor(args.parallel) as pool:
                        list(pool.map(lambda n: bare.client.fget_object("bench-bare", n, str(directory / n.rsplit("/", 1)[1])),
                                      names))

                for run in range(args.runs):
                    src = tmp_path / f"src{run}"
                    src.mkdir()
                    data = src / "data.bin"
                    _generate(data, size, run)  # new bytes each run: no dedup shortcut
                    via = tmp_path / f"via{run}"
                    via.mkdir()
                    _generate(via / "data.bin", size, 1000 + run)
                    # Bare and platform alternate which goes first, so neither always gets the warmer page cache / quieter moment.
                    order = ("bare", "plat") if run % 2 == 0 else ("plat", "bare")
                    version = None
                    for who in order:
                        if who == "bare":  # the minio client: multipart upload, then download to a file
                            await meter.measure("bare_up", asyncio.to_thread(
                                bare.client.fput_object, "bench-bare", f"run{run}", str(data), part_size=16 * MiB))
                            await meter.measure("bare_down", asyncio.to_thread(
                                bare.client.fget_object, "bench-bare", f"run{run}", str(tmp_path / f"bare{run}")))

                            def fget_and_hash(run=run) -> None:  # the same integrity check as pull, done after
                                target = tmp_path / f"bare-hashed{run}"
                                bare.client.fget_object("bench-bare", f"run{run}", str(target))
                                storage_cli.sha256_file(target)
                                target.unlink()

                            await meter.measure("bare_down_sha", asyncio.to_thread(fget_and_hash))
                        else:  # push (hash, presigned parts, server-side verify, commit) and pull (presigned, verified)
                            result: dict = {}

                            async def push(src=src, result=result) -> None:
                                result.update(await storage_cli.push(api, "dataset", repo, src, part_size_mib=16,
                                                                     parallel=args.parallel, quiet=True))

                            await meter.measure("plat_up", push())
                            version = result
                            await meter.measure("plat_down", storage_cli.pull(
                                api, "dataset", repo, str(version["number"]), tmp_path / f"pulled{run}",
                                parallel=args.parallel, quiet=True))
                    # Through the platform (parts PUT to the server, which writes them to S3): other
                    # bytes of the same size, so that nothing is deduplicated away.
                    await meter.measure("via_up", storage_cli.push(api, "dataset", repo, via, part_size_mib=16,
                                                                   parallel=args.parallel, quiet=True, through_platform=True))
                    (via / "data.bin").unlink()

                    async def proxied(run=run, version=version) -> None:
                        url = f"{server.url}/api/v1/datasets/{repo['id']}/versions/{version['number']}/file?path=data.bin"
                        async with session.get(url, headers=api.headers) as r:
                            with open(tmp_path / f"proxied{run}", "wb") as out:
                                async for chunk in r.content.iter_chunked(MiB):
                                    out.write(chunk)

                    await meter.measure("proxy_down", proxied())
                    for p in (tmp_path / f"bare{run}", tmp_path / f"proxied{run}", tmp_path / f"pulled{run}" / "data.bin", data):
                        p.unlink()
                    if args.small_files:  # many small files: per-object round trips dominate
                        many = tmp_path / f"many{run}"
                        many.mkdir()
                        for i in range(args.small_files):
                            (many / f"f{i:05d}.bin").write_bytes(os.urandom(args.small_kib * 1024))
                        out_bare, out_plat = tmp_path / f"many-bare{run}", tmp_path / f"many-plat{run}"
                        out_bare.mkdir()
                        for who in order:
                            if who == "bare":
                                await meter.measure("bare_up_many", asyncio.to_thread(bare_put_many, many, f"many{run}"))
                                await meter.measure("bare_down_many", asyncio.to_thread(bare_get_many, f"many{run}", out_bare))
                            else:
                                result = {}

                                async def push_many(many=many, result=result) -> None:
                                    result.update(await storage_cli.push(api, "dataset", repo, many, parallel=args.parallel, quiet=True))

                                await meter.measure("plat_up_many", push_many())
                                await meter.measure("plat_down_many", storage_cli.pull(
                                    api, "dataset", repo, str(result["number"]), out_plat, parallel=args.parallel, quiet=True))
                        for d in (many, out_bare, out_plat):
                            for f in d.iterdir():
                                f.unlink()
                # Mount cache: cold (fetch from S3 + verify + link) vs cached.
                digest = hashlib.sha256()
                async for chunk in await bare.get(f"run{args.runs - 1}"):
                    digest.update(chunk)
                files = [CachedFile("data.bin", size, digest.hexdigest())]
                await bare.copy(f"run{args.runs - 1}", blob_key(files[0].sha256))

                async def fetch(sha: str, destination: Path) -> None:
                    with open(destination, "wb") as out:
                        async for chunk in await bare.get(blob_key(sha)):
                            out.write(chunk)

                cache = MountCache(tmp_path / "cache", 100 * 1024 * MiB, fetch)
                t = time.perf_counter()
                await cache.materialize(files)
                cold = time.perf_counter() - t
                t = time.perf_counter()
                await cache.materialize(files)
                cached = time.perf_counter() - t

    wall = {k: statistics.median(v) for k, v in meter.wall.items()}
    cpu = {k: statistics.median(v) for k, v in meter.cpu.items()}
    load_after = os.getloadavg()
    print(f"storage bench: {args.size_mib} MiB file, {args.runs} runs (median), {args.parallel} in flight, {args.server} S3 server; "
          f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after ({os.cpu_count()} CPUs, shared)")
    print("  CPU = CPU seconds of the client + the platform's server + the S3 server for the operation, per GiB moved")

    def row(label: str, key: str, total: int, base: str | None = None, note: str = "") -> None:
        rate = _rate(total, wall[key])
        share = f"= {100 * wall[base] / wall[key]:5.1f} % of bare" if base else " " * 17
        print(f"  {label:<38} {rate}  {share}  CPU {cpu[key] / (total / 1024**3):5.2f} s/GiB  {note}".rstrip())

    row("upload   bare minio fput_object", "bare_up", size)
    row("upload   platform push (presigned)", "plat_up", size, "bare_up", "(hashes the file; the server re-reads and verifies sha256)")
    row("upload   platform push (via server)", "via_up", size, "bare_up", "(parts through the platform to S3)")
    row("download bare minio fget_object", "bare_down", size)
    row("download bare fget_object + sha256", "bare_down_sha", size, "bare_down", "(the bare client checking what pull checks)")
    row("download platform pull (presigned)", "plat_down", size, "bare_down", "(verifies sha256)")
    row("download proxied through the server", "proxy_down", size, "bare_down")
    if args.small_files:
        total = small_total
        print(f"  {args.small_files} files of {args.small_kib} KiB ({args.parallel} in flight):")
        row("upload   bare minio fput_object", "bare_up_many", total)
        row("upload   platform push", "plat_up_many", total, "bare_up_many", "(files of one part go through the platform, verified on the way)")
        row("download bare minio fget_object", "bare_down_many", total)
        row("download platform pull (presigned)", "plat_down_many", total, "bare_down_many")
    print(f"  mount    cold (fetch+verify+link)    {cold:6.2f} s;  cached {cached * 1000:6.1f} ms")


if __name__ == "__main__":
    asyncio.run(main())
