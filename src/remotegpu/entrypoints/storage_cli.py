"""`remotegpu dataset|model create|push|pull|ls|versions|diff`: the storage client.

Talks to the API with a personal API token (--token / REMOTEGPU_TOKEN) at --url /
REMOTEGPU_URL. Inside an environment both are set by the platform (a token scoped to the
environment's workspace and to storage, valid while it runs; see
application/storage/env_tokens.py), so `remotegpu dataset push` works from a notebook. push: files hashed locally, only the blobs the platform lacks are sent, in
parts (straight to S3 by presigned URL when the backend signs, through the platform
otherwise), several at once; an interrupted push resumes where it stopped (the upload's
state is kept in ~/.cache/remotegpu/uploads). pull: files already present with the
right sha256 are skipped, partial files resume by Range, every file is verified.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
import queue
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import urllib3

CHUNK = 1024 * 1024
WHOLE_BATCH = 16 * CHUNK  # small files sent together, up to this many bytes per request
STATE_DIR = Path(os.environ.get("REMOTEGPU_CACHE_DIR") or Path.home() / ".cache" / "remotegpu") / "uploads"


class CliError(Exception):
    pass


class Progress:
    """One stderr line: done/total bytes and the rate (rewritten in place on a terminal)."""

    def __init__(self, label: str, total: int, *, quiet: bool = False):
        self.label, self.total, self.done = label, total, 0
        self.quiet = quiet
        self.started = self._last = time.monotonic()
        self.tty = sys.stderr.isatty()
        self._lock = threading.Lock()  # downloads add from worker threads

    def add(self, n: int) -> None:
        with self._lock:
            self.done += n
            now = time.monotonic()
            if not self.quiet and (now - self._last > 0.5 or self.done >= self.total):
                self._last = now
                self._print()

    def _print(self, end: str = "") -> None:
        rate = self.done / max(time.monotonic() - self.started, 1e-6) / CHUNK
        pct = 100 * self.done / self.total if self.total else 100
        line = f"{self.label}: {self.done / CHUNK:.1f}/{self.total / CHUNK:.1f} MiB ({pct:.0f}%) {rate:.1f} MiB/s"
        print(("\r" + line + end) if self.tty else line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if not self.quiet:
            self._print("\n" if self.tty else "")


class Api:
    def __init__(self, url: str, token: str, session: aiohttp.ClientSession):
        self.url, self.session = url.rstrip("/"), session
        self.headers = {"Authorization": f"Bearer {token}"}

    async def call(self, method: str, path: str, *, json_body: Any = None, ok=(200, 201, 204)) -> Any:
        async with self.session.request(method, self.url + path, json=json_body, headers=self.headers) as r:
            body = await r.read()
            if r.status not in ok:
                try:
                    error = json.loads(body)["error"]
                    raise CliError(f"{method} {path}: {r.status} {error['code']}: {error['message']}")
                except (ValueError, KeyError, TypeError):
                    raise CliError(f"{method} {path}: HTTP {r.status}") from None
            return json.loads(body) if body else None

    async def workspace(self, given: str | None) -> str:
        # Inside an environment the platform sets REMOTEGPU_WORKSPACE_ID (and a token scoped to it).
        given = given or os.environ.get("REMOTEGPU_WORKSPACE_ID")
        if given:
            return given
        found = await self.call("GET", "/api/v1/workspaces")
        return next(w["id"] for w in found["items"] if w["is_personal"])

    async def repository(self, kind: str, workspace: str, name: str) -> dict:
        found = await self.call("GET", f"/api/v1/{kind}s?workspace_id={workspace}")
        for repo in found["items"]:
            if repo["name"] == name and repo["workspace_id"] == workspace:
                return repo
        for repo in found["items"]:  # the public shelf
            if repo["name"] == name:
                return repo
        raise CliError(f"no {kind} named {name!r} in workspace {workspace}")


def sha256_file(path: Path, progress: Progress | None = None) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK * 4):
            digest.update(chunk)
            if progress:
                progress.add(len(chunk))
    return digest.hexdigest()


def _read_part(path: Path, offset: int, size: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(size)


def scan(directory: Path) -> dict[str, Path]:
    files = {}
    for p in sorted(directory.rglob("*")):
        if p.is_file() and not p.is_symlink():
            files[p.relative_to(directory).as_posix()] = p
    if not files:
        raise CliError(f"{directory}: no files")
    return files


# --- push -----------------------------------------------------------------------------

def _source(text: str | None) -> dict | None:
    if not text:
        return None
    kind, _, ident = text.partition(":")
    if kind not in ("environment", "job") or not ident:
        raise CliError("--source: environment:<id> or job:<id>")
    return {"kind": kind, "id": ident}


async def push(api: Api, kind: str, repo: dict, directory: Path, *, message: str = "", tag: str | None = None,
               part_size_mib: int = 16, parallel: int = 4, quiet: bool = False, through_platform: bool = False,
               source: dict | None = None) -> dict:
    """``source``: {"kind": "environment"|"job", "id": …}, what made the version (a push with
    an environment's own token records that environment without it)."""
    files = scan(directory)
    total = sum(p.stat().st_size for p in files.values())
    hashing = Progress("hashing", total, quiet=quiet)
    manifest = [{"path": rel, "size": p.stat().st_size, "sha256": await asyncio.to_thread(sha256_file, p, hashing)}
                for rel, p in files.items()]
    hashing.close()
    by_digest = {m["sha256"]: files[m["path"]] for m in manifest}
    key = hashlib.sha256(json.dumps([repo["id"], manifest, message, tag, part_size_mib]).encode()).hexdigest()[:32]
    state_file = STATE_DIR / f"{key}.json"
    state: dict[str, Any] = {}
    upload = None
    if state_file.exists():  # resume the interrupted push of exactly these files
        state = json.loads(state_file.read_text())
        try:
            upload = await api.call("GET", f"/api/v1/uploads/{state['upload_id']}")
            if not quiet:
                print(f"resuming upload {upload['id']}", file=sys.stderr)
        except CliError:
            upload, state = None, {}
    if upload is None:
        upload = await api.call("POST", f"/api/v1/{kind}s/{repo['id']}/uploads", json_body={
            "files": manifest, "message": message, "tag": tag, "part_size": part_size_mib * CHUNK,
            **({"source": source} if source else {})})
        state = {"upload_id": upload["id"], "etags": {}}
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    state_file.write_text(json.dumps(state))
    todo = [p for p in upload["pending"] if not p["verified"]]
    sending = Progress("uploading", sum(p["size"] for p in todo), quiet=quiet)
    gate = asyncio.Semaphore(parallel)  # parts in flight
    files_gate = asyncio.Semaphore(parallel)  # files in flight (their URL and complete calls too)
    part_size = upload["part_size"]

    async def send_part(p: dict, n: int, url: str | None) -> None:
        async with gate:
            data = await asyncio.to_thread(_read_part, by_digest[p["sha256"]], (n - 1) * part_size, part_size)
            if url:
                async with api.session.put(url, data=data) as r:
                    if r.status != 200:
                        raise CliError(f"part {n} of {p['sha256'][:12]}: object store answered {r.status}")
                    state["etags"].setdefault(p["sha256"], {})[str(n)] = r.headers["ETag"].strip('"')
                    state_file.write_text(json.dumps(state))
            else:
                async with api.session.put(f"{api.url}/api/v1/uploads/{upload['id']}/files/{p['sha256']}/parts/{n}", data=data,
                                           headers={**api.headers, "Content-Type": "application/octet-stream"}) as r:
                    if r.status != 200:
                        raise CliError(f"part {n} of {p['sha256'][:12]}: {r.status} {await r.text()}")
            sending.add(len(data))

    async def send_file(p: dict) -> None:
        async with files_gate:
            await _send_file(p)

    async def _send_file(p: dict) -> None:
        recorded = state["etags"].get(p["sha256"], {})
        missing = [n for n in range(1, p["part_count"] + 1) if n not in p["received_parts"] and str(n) not in recorded]
        sending.add(sum(min(part_size, p["size"] - (n - 1) * part_size) for n in range(1, p["part_count"] + 1) if n not in missing))
        urls: dict[str, str] = {}
        # A file of one part goes through the platform, which hashes it on the way and stores
        # it verified: one request and one object-store write, no read-back (for small files
        # the per-file round trips cost more than the bytes).
        whole = p["part_count"] == 1
        if missing and upload["presigned"] and not through_platform and not whole:
            for i in range(0, len(missing), 1000):
                answer = await api.call("POST", f"/api/v1/uploads/{upload['id']}/files/{p['sha256']}/part-urls",
                                        json_body={"numbers": missing[i:i + 1000]})
                urls.update(answer["urls"])
        await asyncio.gather(*(send_part(p, n, urls.get(str(n))) for n in missing))
        if whole and missing and not urls:
            return  # verified by the platform as it arrived
        parts = [{"number": int(n), "etag": e} for n, e in state["etags"].get(p["sha256"], {}).items()]
        await api.call("POST", f"/api/v1/uploads/{upload['id']}/files/{p['sha256']}/complete",
                       json_body={"parts": parts} if parts else {})

    async def send_whole(batch: list[dict]) -> None:
        """Small files, many in one request: their bytes one after the other; the platform
        hashes and stores each, verified (one round trip for the lot, no read-back)."""
        async with files_gate:
            def read_all() -> bytes:
                return b"".join(by_digest[p["sha256"]].read_bytes() for p in batch)

            body = await asyncio.to_thread(read_all)
            url = f"{api.url}/api/v1/uploads/{upload['id']}/files?sha256=" + ",".join(p["sha256"] for p in batch)
            async with api.session.post(url, data=body, headers={**api.headers, "Content-Type": "application/octet-stream"}) as r:
                if r.status != 200:
                    raise CliError(f"{len(batch)} small files: {r.status} {await r.text()}")
            sending.add(len(body))

    # Files of one part go in batches of up to WHOLE_BATCH bytes / 100 files (their digests fill the URL); the others part by part.
    whole = [p for p in todo if p["part_count"] == 1]
    batches: list[list[dict]] = []
    for p in whole:
        if not batches or len(batches[-1]) >= 100 or sum(q["size"] for q in batches[-1]) + p["size"] > WHOLE_BATCH:
            batches.append([])
        batches[-1].append(p)
    await asyncio.gather(*(send_whole(b) for b in batches), *(send_file(p) for p in todo if p["part_count"] != 1))
    sending.close()
    version = await api.call("POST", f"/api/v1/uploads/{upload['id']}/commit")
    state_file.unlink(missing_ok=True)
    return version


# --- pull -----------------------------------------------------------------------------

DOWNLOAD_BLOCK = 8 * CHUNK


def _http_pool(parallel: int) -> urllib3.PoolManager:
    """Downloads run on urllib3 in worker threads: http.client reads straight into large
    blocks, about a third of the CPU aiohttp's small-chunk stream costs per byte (bench/storage.py).
    No automatic retries: a dropped download resumes by Range instead."""
    return urllib3.PoolManager(num_pools=4, maxsize=max(parallel, 1), retries=False,
                               timeout=urllib3.Timeout(connect=30, read=300))


def _download(http: urllib3.PoolManager, url: str, headers: dict[str, str], partial: Path, have: int,
              progress: Progress) -> "hashlib._Hash":
    """GET ``url`` into ``partial`` (appending from byte ``have`` when the server honours the
    Range), returning the sha256 of the whole file. Two threads: this one receives 8 MiB
    blocks while a second hashes and writes the previous ones (hashlib and the file write
    release the GIL), so on a free core the check costs no wall time. A dropped connection
    still writes every block received before the file closes (the next pull resumes there)."""
    if have:
        headers = {**headers, "Range": f"bytes={have}-"}
    r = http.request("GET", url, headers=headers, preload_content=False, decode_content=False)
    try:
        if r.status not in (200, 206):
            raise CliError(f"{partial.name.removesuffix('.part')}: HTTP {r.status}")
        digest = hashlib.sha256()
        resumed = r.status == 206 and have > 0
        if have and not resumed:
            progress.add(-have)
        if resumed:  # the bytes already here count too
            with open(partial, "rb") as existing:
                while block := existing.read(DOWNLOAD_BLOCK):
                    digest.update(block)
        blocks: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
        failed: list[BaseException] = []

        def store() -> None:
            try:
                with open(partial, "ab" if resumed else "wb", buffering=0) as out:
                    while (block := blocks.get()) is not None:
                        if not failed:
                            out.write(block)
                            digest.update(block)
            except BaseException as exc:  # noqa: BLE001 -- re-raised by the receiving thread
                failed.append(exc)
                while blocks.get() is not None:  # let the receiver finish
                    pass

        writer = threading.Thread(target=store, name="pull-writer", daemon=True)
        writer.start()
        try:
            while not failed and (block := r.read(DOWNLOAD_BLOCK)):
                blocks.put(block)
                progress.add(len(block))
        finally:
            blocks.put(None)
            writer.join()
        if failed:
            raise failed[0]
        return digest
    finally:
        r.release_conn()


async def pull(api: Api, kind: str, repo: dict, ref: str, directory: Path, *, parallel: int = 4, quiet: bool = False) -> dict:
    version = await api.call("GET", f"/api/v1/{kind}s/{repo['id']}/versions/{ref}")
    directory.mkdir(parents=True, exist_ok=True)
    root = directory.resolve()
    progress = Progress("downloading", sum(f["size"] for f in version["files"]), quiet=quiet)
    gate = asyncio.Semaphore(parallel)
    http = _http_pool(parallel)

    async def local(f: dict) -> Path | None:
        """The target path, or None when a verified copy is already there."""
        target = (root / f["path"]).resolve()
        if root not in target.parents:
            raise CliError(f"refusing path {f['path']!r} outside {root}")
        if target.exists() and target.stat().st_size == f["size"] and await asyncio.to_thread(sha256_file, target) == f["sha256"]:
            progress.add(f["size"])
            return None
        return target

    async def one(f: dict, target: Path, where: dict) -> None:
        async with gate:
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".part")
            have = partial.stat().st_size if partial.exists() else 0
            if have > f["size"]:
                partial.unlink()
                have = 0
            progress.add(have)
            url = where["url"] if where["presigned"] else api.url + where["url"]
            headers = {} if where["presigned"] else dict(api.headers)
            digest = None  # hashed while it streams in (no second read of the file)
            if have < f["size"]:
                digest = await asyncio.to_thread(_download, http, url, headers, partial, have, progress)
            elif not partial.exists():
                partial.touch()
            got = partial.stat().st_size
            if got < f["size"]:  # the body ended early: what came stays for the next pull to resume
                raise CliError(f"{f['path']}: the download stopped at {got} of {f['size']} bytes (run pull again to resume)")
            actual = digest.hexdigest() if digest is not None else await asyncio.to_thread(sha256_file, partial)
            if actual != f["sha256"]:
                partial.unlink()
                raise CliError(f"{f['path']}: sha256 mismatch after download (removed; run pull again)")
            os.replace(partial, target)

    try:
        todo = []
        for f in version["files"]:
            target = await local(f)
            if target is not None:
                todo.append((f, target))
        # Where to get them: one request per 1000 files (not one per file), asked for just
        # before they are fetched, so that presigned URLs stay fresh on a long pull.
        for i in range(0, len(todo), 1000):
            batch = todo[i:i + 1000]
            answer = await api.call("POST", f"/api/v1/{kind}s/{repo['id']}/versions/{version['number']}/file-urls",
                                    json_body={"paths": [f["path"] for f, _ in batch]})
            where = {item["path"]: item for item in answer["items"]}
            await asyncio.gather(*(one(f, target, where[f["path"]]) for f, target in batch))
    finally:
        http.clear()
    progress.close()
    return version


# --- commands -------------------------------------------------------------------------

def _print_table(rows: list[list[str]]) -> None:
    if not rows:
        return
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def _split_ref(name: str) -> tuple[str, str]:
    return (name.split(":", 1)[0], name.split(":", 1)[1]) if ":" in name else (name, "latest")


async def _run(args: argparse.Namespace) -> int:
    url = args.url or os.environ.get("REMOTEGPU_URL") or "http://127.0.0.1:8080"
    token = args.token or os.environ.get("REMOTEGPU_TOKEN")
    if not token:
        raise CliError("an API token is needed: --token or REMOTEGPU_TOKEN (create one in the console: Account → API tokens)")
    kind = args.kind
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=300)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        api = Api(url, token, session)
        ws = await api.workspace(args.workspace)
        if args.action == "create":
            body: dict[str, Any] = {"workspace_id": ws, "name": args.name, "description": args.description}
            if kind == "model":
                body["model"] = {"framework": args.framework, "format": args.format, "task": args.task,
                                 "base_model": args.base_model, "metrics": dict(m.split("=", 1) for m in args.metric)}
            repo = await api.call("POST", f"/api/v1/{kind}s", json_body=body)
            print(repo["id"])
        elif args.action == "ls":
            found = await api.call("GET", f"/api/v1/{kind}s?workspace_id={ws}")
            _print_table([["NAME", "VISIBILITY", "LATEST", "SIZE", "ID"]] + [
                [r["name"], r["visibility"], str(r["latest_version"] or "-"), f"{r['size_bytes'] / CHUNK:.1f} MiB", r["id"]]
                for r in found["items"]])
        elif args.action == "versions":
            repo = await api.repository(kind, ws, args.name)
            found = await api.call("GET", f"/api/v1/{kind}s/{repo['id']}/versions")
            _print_table([["VERSION", "FILES", "SIZE", "TAGS", "CREATED", "MESSAGE"]] + [
                [str(v["number"]), str(v["file_count"]), f"{v['size_bytes'] / CHUNK:.1f} MiB", ",".join(v["tags"]),
                 v["created_at"][:19], v["message"]] for v in found["items"]])
        elif args.action == "diff":
            repo = await api.repository(kind, ws, args.name)
            d = await api.call("GET", f"/api/v1/{kind}s/{repo['id']}/diff?from={args.a}&to={args.b}")
            for f in d["added"]:
                print(f"+ {f['path']}")
            for f in d["removed"]:
                print(f"- {f['path']}")
            for c in d["changed"]:
                print(f"M {c['path']}")
            print(f"{d['unchanged']} unchanged", file=sys.stderr)
        elif args.action == "push":
            repo = await api.repository(kind, ws, args.name)
            version = await push(api, kind, repo, Path(args.directory), message=args.message, tag=args.tag,
                                 part_size_mib=args.part_size, parallel=args.parallel, quiet=args.quiet,
                                 through_platform=args.through_platform, source=_source(args.source))
            print(f"{kind} {repo['name']} version {version['number']}")
        elif args.action == "pull":
            name, ref = _split_ref(args.name)
            repo = await api.repository(kind, ws, name)
            version = await pull(api, kind, repo, ref, Path(args.directory), parallel=args.parallel, quiet=args.quiet)
            print(f"{kind} {repo['name']} version {version['number']} → {args.directory}")
    return 0


def cmd_storage(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_run(args))
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (aiohttp.ClientError, urllib3.exceptions.HTTPError, OSError) as exc:
        print(f"error: {exc.__class__.__name__}: {exc} (run the same command again to resume)", file=sys.stderr)
        return 1


def add_commands(sub: argparse._SubParsersAction) -> None:
    for kind in ("dataset", "model"):
        p = sub.add_parser(kind, help=f"{kind}s: create, push, pull, ls, versions, diff")
        p.set_defaults(fn=cmd_storage, kind=kind)
        common = argparse.ArgumentParser(add_help=False)
        common.add_argument("--url", help="platform URL (REMOTEGPU_URL)")
        common.add_argument("--token", help="personal API token (REMOTEGPU_TOKEN)")
        common.add_argument("--workspace", help="workspace id (default: REMOTEGPU_WORKSPACE_ID, else your personal workspace)")
        common.add_argument("--quiet", action="store_true", help="no progress lines")
        actions = p.add_subparsers(dest="action", required=True)
        a = actions.add_parser("create", parents=[common])
        a.add_argument("name")
        a.add_argument("--description", default="")
        if kind == "model":
            for flag in ("framework", "format", "task", "base-model"):
                a.add_argument(f"--{flag}", default="")
            a.add_argument("--metric", action="append", default=[], help="key=value (repeatable)")
        actions.add_parser("ls", parents=[common])
        a = actions.add_parser("versions", parents=[common])
        a.add_argument("name")
        a = actions.add_parser("diff", parents=[common])
        a.add_argument("name")
        a.add_argument("a", help="version, tag or latest")
        a.add_argument("b")
        a = actions.add_parser("push", parents=[common], help="upload a directory as the next version")
        a.add_argument("name")
        a.add_argument("directory")
        a.add_argument("--message", default="")
        a.add_argument("--tag")
        a.add_argument("--part-size", type=int, default=16, help="MiB, 8-64")
        a.add_argument("--parallel", type=int, default=4)
        a.add_argument("--source", help="what made it: environment:<id> or job:<id> (recorded on the version)")
        a.add_argument("--through-platform", action="store_true",
                       help="send parts through the platform even when the object store takes them directly")
        a = actions.add_parser("pull", parents=[common], help="download NAME[:VERSION|TAG] into a directory")
        a.add_argument("name")
        a.add_argument("directory")
        a.add_argument("--parallel", type=int, default=4)
