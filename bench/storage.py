"""Storage throughput: the platform's path vs the bare ``minio`` client, same S3 server, same run.

One moto server (S3, its own process; MinIO itself cannot be installed here) holds two
buckets. The bare baseline is the ``minio`` client's fput_object / fget_object (16 MiB
parts). The platform's path is what ``remotegpu dataset push|pull`` does against a real
``remotegpu serve`` (SQLite, S3 backend on the same moto): hash the file, parts straight
to S3 by presigned URLs, the server re-reads and verifies sha256, commit; pull by
presigned URL and verify. Also the proxied download (bytes through the platform) and the
host mount cache: a version materialized cold (download + verify + hard links) vs cached.
Aim (issue 14): platform ≥ 90 % of bare.

    .venv/bin/python bench/storage.py [--size-mib 256] [--runs 3]
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


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--parallel", type=int, default=4, help="parts in flight (the CLI's --parallel)")
    args = parser.parse_args()
    size = args.size_mib * MiB
    with tempfile.TemporaryDirectory(prefix="bench-storage-") as tmp, s3_server("moto") as s3:
        tmp_path = Path(tmp)
        storage_cli.STATE_DIR = tmp_path / "state"
        bare = S3ObjectStore(S3Config(s3.endpoint, "bench-bare", s3.access_key, s3.secret_key, s3.region, "path"))
        await bare.ensure_ready()
        env = dict(REMOTEGPU_STORAGE_BACKEND="s3", REMOTEGPU_S3_ENDPOINT=s3.endpoint, REMOTEGPU_S3_BUCKET="bench-platform",
                   REMOTEGPU_S3_ACCESS_KEY=s3.access_key, REMOTEGPU_S3_SECRET_KEY=s3.secret_key, REMOTEGPU_S3_REGION=s3.region,
                   REMOTEGPU_S3_ADDRESSING="path", REMOTEGPU_RUNTIME="memory")
        with live_server(tmp_path / "server", **env) as server:
            token = server.login("admin", "admin-password-123")
            results: dict[str, list[float]] = {k: [] for k in ("bare_up", "plat_up", "via_up", "bare_down", "plat_down", "proxy_down")}
            async with aiohttp.ClientSession() as session:
                api = storage_cli.Api(server.url, token, session)
                ws = await api.workspace(None)
                await api.call("POST", "/api/v1/datasets", json_body={"workspace_id": ws, "name": "bench"})
                repo = await api.repository("dataset", ws, "bench")
                for run in range(args.runs):
                    src = tmp_path / f"src{run}"
                    src.mkdir()
                    data = src / "data.bin"
                    _generate(data, size, run)  # new bytes each run: no dedup shortcut
                    # Bare minio client: multipart upload, then download to a file.
                    t = time.perf_counter()
                    await asyncio.to_thread(bare.client.fput_object, "bench-bare", f"run{run}", str(data), part_size=16 * MiB)
                    results["bare_up"].append(time.perf_counter() - t)
                    t = time.perf_counter()
                    await asyncio.to_thread(bare.client.fget_object, "bench-bare", f"run{run}", str(tmp_path / f"bare{run}"))
                    results["bare_down"].append(time.perf_counter() - t)
                    # The platform: push (hash, presigned parts, server-side verify, commit) and pull (presigned, verified).
                    t = time.perf_counter()
                    version = await storage_cli.push(api, "dataset", repo, src, part_size_mib=16, parallel=args.parallel, quiet=True)
                    results["plat_up"].append(time.perf_counter() - t)
                    # Through the platform (parts PUT to the server, which writes them to S3): other
                    # bytes of the same size, so that nothing is deduplicated away.
                    via = tmp_path / f"via{run}"
                    via.mkdir()
                    _generate(via / "data.bin", size, 1000 + run)
                    t = time.perf_counter()
                    await storage_cli.push(api, "dataset", repo, via, part_size_mib=16, parallel=args.parallel, quiet=True,
                                           through_platform=True)
                    results["via_up"].append(time.perf_counter() - t)
                    (via / "data.bin").unlink()
                    t = time.perf_counter()
                    await storage_cli.pull(api, "dataset", repo, str(version["number"]), tmp_path / f"pulled{run}", parallel=args.parallel, quiet=True)
                    results["plat_down"].append(time.perf_counter() - t)
                    t = time.perf_counter()
                    url = f"{server.url}/api/v1/datasets/{repo['id']}/versions/{version['number']}/file?path=data.bin"
                    async with session.get(url, headers=api.headers) as r:
                        with open(tmp_path / f"proxied{run}", "wb") as out:
                            async for chunk in r.content.iter_chunked(MiB):
                                out.write(chunk)
                    results["proxy_down"].append(time.perf_counter() - t)
                    for p in (tmp_path / f"bare{run}", tmp_path / f"proxied{run}", tmp_path / f"pulled{run}" / "data.bin", data):
                        p.unlink()
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

    med = {k: statistics.median(v) for k, v in results.items()}
    load = os.getloadavg()[0]
    print(f"storage bench: {args.size_mib} MiB file, {args.runs} runs (median), {args.parallel} parts in flight, moto S3 server, "
          f"load average {load:.1f}")
    print(f"  upload   bare minio fput_object      {_rate(size, med['bare_up'])}")
    print(f"  upload   platform push (presigned)   {_rate(size, med['plat_up'])}  = {100 * med['bare_up'] / med['plat_up']:5.1f} % of bare"
          "  (includes hashing the file and the server's sha256 re-read)")
    print(f"  upload   platform push (via server)  {_rate(size, med['via_up'])}  = {100 * med['bare_up'] / med['via_up']:5.1f} % of bare"
          "  (parts through the platform to S3)")
    print(f"  download bare minio fget_object      {_rate(size, med['bare_down'])}")
    print(f"  download platform pull (presigned)   {_rate(size, med['plat_down'])}  = {100 * med['bare_down'] / med['plat_down']:5.1f} % of bare"
          "  (includes the sha256 check)")
    print(f"  download proxied through the server  {_rate(size, med['proxy_down'])}  = {100 * med['bare_down'] / med['proxy_down']:5.1f} % of bare")
    print(f"  mount    cold (fetch+verify+link)    {cold:6.2f} s;  cached {cached * 1000:6.1f} ms")


if __name__ == "__main__":
    asyncio.run(main())
