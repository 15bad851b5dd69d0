"""``remotegpu job …``: training jobs from the command line, over the HTTP API.

    remotegpu job run --gpus 4 --nodes 2 --image remotegpu/base -- python train.py

submits the job, follows every node's output (``[node N]`` prefixes when N > 1) until
the job ends, and exits with the job's exit code (``timed_out`` 124, ``cancelled`` 130,
a failed job the failing node's code). Ctrl-C cancels the job (``--detach`` just
leaves). ``job list``, ``job logs ID [--follow]``, ``job cancel ID``.

The server: ``--server`` or ``REMOTEGPU_URL`` (default ``http://127.0.0.1:8080``);
the credential: ``--token`` or ``REMOTEGPU_TOKEN`` (an API token from the console).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from typing import Any

EXIT_BY_STATUS = {"succeeded": 0, "timed_out": 124, "cancelled": 130}


class ApiError(Exception):
    pass


def add_job_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", default=os.environ.get("REMOTEGPU_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--token", default=os.environ.get("REMOTEGPU_TOKEN", ""), help="API token (default: $REMOTEGPU_TOKEN)")
    sub = parser.add_subparsers(dest="job_command", required=True)
    run = sub.add_parser("run", help="submit a training job, follow its log, exit with its exit code")
    run.add_argument("--workspace", help="workspace id (default: your personal workspace)")
    run.add_argument("--name", default="job")
    run.add_argument("--image")
    run.add_argument("--gpus", type=int, default=0, help="GPUs per node")
    run.add_argument("--gpu-model")
    run.add_argument("--nodes", type=int, default=1)
    run.add_argument("--cpus", type=int, default=2, help="CPU cores per node")
    run.add_argument("--memory", type=int, default=8, help="GiB per node")
    run.add_argument("--time-limit", type=int, help="minutes")
    run.add_argument("--retries", type=int, default=0, help="restart the whole gang this many times when a node fails")
    run.add_argument("--priority", type=int, default=0)
    run.add_argument("-e", "--env", action="append", default=[], metavar="NAME=VALUE")
    run.add_argument("--output", metavar="NAME", help="a model of the workspace (name or id): node 0's --output-path "
                     "becomes its next version when the job succeeds")
    run.add_argument("--output-path", default="/output", help="the directory in node 0's container (default: /output)")
    run.add_argument("--output-kind", choices=["model", "dataset"], default="model")
    run.add_argument("--detach", action="store_true", help="print the job id and return at once")
    run.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command run on every node")
    lst = sub.add_parser("list", help="training jobs of a workspace")
    lst.add_argument("--workspace")
    logs = sub.add_parser("logs", help="print a job's logs (every node)")
    logs.add_argument("job_id")
    logs.add_argument("--follow", "-f", action="store_true")
    cancel = sub.add_parser("cancel", help="cancel a job")
    cancel.add_argument("job_id")


def cmd_job(args) -> int:
    if not args.token:
        print("remotegpu job: pass --token or set REMOTEGPU_TOKEN (an API token from the console)", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_main(args))
    except ApiError as exc:
        print(f"remotegpu job: {exc}", file=sys.stderr)
        return 1


async def _main(args) -> int:
    import aiohttp

    headers = {"Authorization": f"Bearer {args.token}"}
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
    async with aiohttp.ClientSession(args.server.rstrip("/"), headers=headers, timeout=timeout) as http:
        client = _Client(http)
        if args.job_command == "run":
            return await _run(client, args)
        if args.job_command == "list":
            ws = args.workspace or await client.personal_workspace()
            page = await client.call("GET", f"/api/v1/training-jobs?workspace_id={ws}")
            for j in page["items"]:
                print(f"{j['id']}  {j['name']:<20} {j['status']:<10} {j['nodes']}×{j['gpus_per_node']} GPU  {j['status_message']}")
            return 0
        if args.job_command == "logs":
            if args.follow:
                return await _follow(client, args.job_id, prefix=True)
            listing = await client.call("GET", f"/api/v1/training-jobs/{args.job_id}/logs")
            for item in listing["items"]:
                text = await client.text(f"/api/v1/training-jobs/{args.job_id}/logs/{item['node']}")
                _print_prefixed(text, f"[{item['node']}] " if listing["total"] > 1 else "")
            return 0
        if args.job_command == "cancel":
            job = await client.call("POST", f"/api/v1/training-jobs/{args.job_id}/cancel")
            print(job["status"])
            return 0
    return 2


class _Client:
    def __init__(self, http) -> None:
        self.http = http

    async def call(self, method: str, path: str, body: dict | None = None) -> Any:
        async with self.http.request(method, path, json=body) as r:
            data = await r.json(content_type=None)
            if r.status >= 400:
                error = (data or {}).get("error", {})
                raise ApiError(f"{error.get('code', r.status)}: {error.get('message', '')}")
            return data

    async def text(self, path: str) -> str:
        async with self.http.get(path) as r:
            if r.status >= 400:
                raise ApiError(f"{r.status}: {await r.text()}")
            return await r.text()

    async def personal_workspace(self) -> str:
        page = await self.call("GET", "/api/v1/workspaces")
        for w in page["items"]:
            if w.get("is_personal"):
                return w["id"]
        raise ApiError("no personal workspace: pass --workspace")


async def _run(client: _Client, args) -> int:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise ApiError("give the command after --, e.g. remotegpu job run --gpus 1 -- python train.py")
    env = {}
    for item in args.env:
        name, sep, value = item.partition("=")
        if not sep:
            raise ApiError(f"--env {item!r}: expected NAME=VALUE")
        env[name] = value
    body = {
        "workspace_id": args.workspace or await client.personal_workspace(), "name": args.name, "command": command,
        "gpus_per_node": args.gpus, "nodes": args.nodes, "cpu_cores": args.cpus, "memory_gib": args.memory,
        "max_retries": args.retries, "priority": args.priority, "env": env,
    }
    for key, value in (("image", args.image), ("gpu_model", args.gpu_model), ("time_limit_minutes", args.time_limit)):
        if value is not None:
            body[key] = value
    if args.output:
        body["output"] = {"kind": args.output_kind, "name": args.output, "path": args.output_path}
    job = await client.call("POST", "/api/v1/training-jobs", body)
    print(f"job {job['id']}: {job['status']} — {job['status_message']}", file=sys.stderr)
    if args.detach:
        print(job["id"])
        return 0
    loop = asyncio.get_running_loop()
    follow = asyncio.ensure_future(_follow(client, job["id"], prefix=args.nodes > 1))
    try:
        loop.add_signal_handler(signal.SIGINT, follow.cancel)
    except (NotImplementedError, RuntimeError):
        pass
    try:
        code = await follow
    except asyncio.CancelledError:
        print(f"\ncancelling job {job['id']}…", file=sys.stderr)
        await client.call("POST", f"/api/v1/training-jobs/{job['id']}/cancel")
        return EXIT_BY_STATUS["cancelled"]
    if args.output:
        return await _await_output(client, job["id"], code)
    return code


async def _await_output(client: _Client, job_id: str, code: int, timeout: float = 3600) -> int:
    """After the job: wait for its output to become a version (or not); 1 when a succeeded
    job's output could not be stored."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        output = (await client.call("GET", f"/api/v1/training-jobs/{job_id}")).get("output") or {}
        state = output.get("state")
        if state not in ("waiting", "collecting") or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(1)
    if state == "done":
        print(f"output: {output['kind']} {output['name']} version {output['version']}", file=sys.stderr)
    elif state == "failed":
        print(f"output not stored: {output.get('message', '')}", file=sys.stderr)
        return code or 1
    elif state in ("waiting", "collecting"):
        print(f"output still {state}; see the job's page", file=sys.stderr)
    return code


async def _follow(client: _Client, job_id: str, *, prefix: bool) -> int:
    """Print the live log until the job ends; its exit code. Reconnects where it left off."""
    offsets: dict[str, int] = {}
    line_start: dict[str, bool] = {}  # per node: the next byte starts a line (gets the prefix)
    last_message = None
    while True:
        query = ",".join(f"{k}={v}" for k, v in offsets.items())
        path = f"/api/v1/training-jobs/{job_id}/logs/stream" + (f"?offsets={query}" if query else "")
        ended = None
        async with client.http.get(path) as r:
            if r.status >= 400:
                raise ApiError(f"{r.status}: {await r.text()}")
            event = None
            async for raw in r.content:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    data = json.loads(line[6:])
                    if event == "log":
                        offsets[data["node"]] = data["offset"] + len(data["data"].encode())
                        fresh = line_start.get(data["node"], True)
                        _print_prefixed(data["data"], f"[{data['node']}] " if prefix else "", first=fresh)
                        line_start[data["node"]] = data["data"].endswith("\n")
                    elif event == "status":
                        message = f"{data['status']}: {data['status_message']}"
                        if message != last_message:
                            print(f"job {job_id}: {message}", file=sys.stderr)
                            last_message = message
                    elif event == "end":
                        ended = data
        if ended is not None:
            status, code = ended["status"], ended.get("exit_code")
            if status in EXIT_BY_STATUS:
                return EXIT_BY_STATUS[status]
            return code if isinstance(code, int) and 0 < code < 256 else 1
        await asyncio.sleep(1)  # the stream ended early (server restart, time limit): resume


def _print_prefixed(text: str, prefix: str, first: bool = True) -> None:
    if prefix:
        lines = text.splitlines(keepends=True)
        text = "".join(line if i == 0 and not first else prefix + line for i, line in enumerate(lines))
    sys.stdout.write(text)
    sys.stdout.flush()
