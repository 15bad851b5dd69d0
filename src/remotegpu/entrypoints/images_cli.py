"""``remotegpu images …``: the image catalog from a shell or a script, over the API.

    remotegpu images ls [--workspace WS] [--json]
    remotegpu images save ENV_ID NAME [--tag T] [--description D] [--wait]
    remotegpu images build --workspace WS NAME -f Dockerfile [--context DIR] [--tag T] [--wait]
    remotegpu images logs JOB_ID [--follow]
    remotegpu images cancel JOB_ID
    remotegpu images rm IMAGE_ID

The server is ``--server`` or REMOTEGPU_URL (default http://127.0.0.1:8080), the
credential ``--token`` or REMOTEGPU_TOKEN (an API token: console → account → tokens).
``--wait``/``--follow`` print the job's log as it grows and exit 0 only when it succeeded.
Stdlib only (like the agent's CLI).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import sys
import tarfile
import time

from remotegpu.entrypoints.api_client import ApiError, call as _call


def _size(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB" if n else "-"


def cmd_ls(args) -> int:
    query = f"?workspace_id={args.workspace}" if args.workspace else ""
    page = _call(args, "GET", "/api/v1/images" + query)
    if args.json:
        print(json.dumps(page["items"], indent=2))
        return 0
    rows = [("ID", "NAME:TAG", "VISIBILITY", "STATUS", "SIZE", "REFERENCE")]
    for i in page["items"]:
        rows.append((i["id"], f"{i['name']}:{i['tag']}", i["visibility"], i["status"], _size(i["size_bytes"]), i["reference"]))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
    return 0


def _follow(args, job_id: str) -> int:
    printed = 0
    while True:
        job = _call(args, "GET", f"/api/v1/image-jobs/{job_id}")
        start = job["log_offset"]
        text = job["log"]
        if printed < start:
            printed = start
        sys.stdout.write(text[printed - start:])
        sys.stdout.flush()
        printed = start + len(text)
        if job["status"] in ("succeeded", "failed", "cancelled"):
            if job["status"] != "succeeded":
                print(f"job {job['status']}: {job['error']}", file=sys.stderr)
            return 0 if job["status"] == "succeeded" else 1
        time.sleep(1.0)


def _started(args, body: dict) -> int:
    image, job = body["image"], body["job"]
    print(f"image {image['id']} ({image['reference']}), job {job['id']}: {job['status']}", file=sys.stderr)
    if args.wait:
        return _follow(args, job["id"])
    print(job["id"])
    return 0


def cmd_save(args) -> int:
    body = _call(args, "POST", f"/api/v1/environments/{args.env_id}/save-image",
                 {"name": args.name, "tag": args.tag, "description": args.description})
    return _started(args, body)


def _context(directory: str) -> str:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for entry in sorted(os.listdir(directory)):
            tar.add(os.path.join(directory, entry), arcname=entry)
    return base64.b64encode(buffer.getvalue()).decode()


def cmd_build(args) -> int:
    with open(args.file, encoding="utf-8") as f:
        dockerfile = f.read()
    body = {"workspace_id": args.workspace, "name": args.name, "tag": args.tag, "dockerfile": dockerfile,
            "description": args.description, "timeout_seconds": args.timeout}
    if args.context:
        body["context"] = _context(args.context)
    return _started(args, _call(args, "POST", "/api/v1/images/builds", body))


def cmd_logs(args) -> int:
    if args.follow:
        return _follow(args, args.job_id)
    job = _call(args, "GET", f"/api/v1/image-jobs/{args.job_id}")
    sys.stdout.write(job["log"])
    print(f"[{job['status']}] {job['progress']}", file=sys.stderr)
    return 0


def cmd_cancel(args) -> int:
    job = _call(args, "POST", f"/api/v1/image-jobs/{args.job_id}/cancel")
    print(job["status"])
    return 0


def cmd_rm(args) -> int:
    _call(args, "DELETE", f"/api/v1/images/{args.image_id}")
    return 0


def add_images_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", default=os.environ.get("REMOTEGPU_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--token", default=os.environ.get("REMOTEGPU_TOKEN", ""))
    sub = parser.add_subparsers(dest="images_command", required=True)
    p = sub.add_parser("ls", help="list the catalog")
    p.add_argument("--workspace")
    p.add_argument("--json", action="store_true")
    p.set_defaults(images_fn=cmd_ls)
    p = sub.add_parser("save", help="save an environment as an image")
    p.add_argument("env_id")
    p.add_argument("name")
    p.add_argument("--tag", default="latest")
    p.add_argument("--description", default="")
    p.add_argument("--wait", action="store_true", help="print the log until the save is over")
    p.set_defaults(images_fn=cmd_save)
    p = sub.add_parser("build", help="build a Dockerfile FROM a catalog image")
    p.add_argument("name")
    p.add_argument("--workspace", required=True)
    p.add_argument("-f", "--file", default="Dockerfile")
    p.add_argument("--context", help="a directory whose files COPY may use")
    p.add_argument("--tag", default="latest")
    p.add_argument("--description", default="")
    p.add_argument("--timeout", type=int, default=3600)
    p.add_argument("--wait", action="store_true", help="print the build log until it is over")
    p.set_defaults(images_fn=cmd_build)
    p = sub.add_parser("logs", help="a job's log")
    p.add_argument("job_id")
    p.add_argument("--follow", action="store_true")
    p.set_defaults(images_fn=cmd_logs)
    p = sub.add_parser("cancel", help="cancel a save or build")
    p.add_argument("job_id")
    p.set_defaults(images_fn=cmd_cancel)
    p = sub.add_parser("rm", help="delete an image")
    p.add_argument("image_id")
    p.set_defaults(images_fn=cmd_rm)


def cmd_images(args) -> int:
    try:
        return args.images_fn(args)
    except ApiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
