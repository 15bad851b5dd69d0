"""The init container of a Kubernetes environment with dataset/model mounts.

``python -m remotegpu.entrypoints.kube_mount_fetch KIND REPOSITORY_ID VERSION DIRECTORY``
downloads one version (every file, sha256-checked) into DIRECTORY (the Pod's emptyDir that
the environment's container then mounts read-only at ``/datasets/<name>`` or
``/models/<name>``). It authenticates with the environment's own ``REMOTEGPU_TOKEN``
(scoped to the storage API and the environment's workspace, valid while the environment
starts or runs; read from the environment's Secret) at ``REMOTEGPU_URL`` (the runtime sets
``REMOTEGPU_KUBE_PLATFORM_URL`` there when configured: the servers' in-cluster Service).
The repository is named by id, as the server resolved it, never looked up by name again.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import aiohttp

from remotegpu.entrypoints import storage_cli


async def fetch(kind: str, repository_id: str, version: str, directory: Path, *, url: str, token: str) -> dict:
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=300)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        api = storage_cli.Api(url, token, session)
        return await storage_cli.pull(api, kind, {"id": repository_id}, version, directory, quiet=True)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 4 or args[0] not in ("dataset", "model"):
        print("usage: kube_mount_fetch dataset|model REPOSITORY_ID VERSION DIRECTORY", file=sys.stderr)
        return 2
    url, token = os.environ.get("REMOTEGPU_URL", ""), os.environ.get("REMOTEGPU_TOKEN", "")
    if not url or not token:
        print("kube_mount_fetch: REMOTEGPU_URL and REMOTEGPU_TOKEN must be set (the environment's Secret)", file=sys.stderr)
        return 2
    kind, repository_id, version, directory = args
    try:
        found = asyncio.run(fetch(kind, repository_id, version, Path(directory), url=url, token=token))
    except (storage_cli.CliError, aiohttp.ClientError, OSError) as exc:
        print(f"kube_mount_fetch: {kind} {repository_id} version {version}: {exc}", file=sys.stderr)
        return 1
    print(f"{kind} {repository_id} version {found['number']}: {len(found['files'])} files → {directory}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
