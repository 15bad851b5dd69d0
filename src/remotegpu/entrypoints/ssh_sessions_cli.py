"""``remotegpu ssh-sessions …``: the SSH gateway's audit record and its recordings, over
the API (platform admins).

    remotegpu ssh-sessions ls [--environment ENV] [--workspace WS] [--user USER_ID] [--limit N] [--json]
    remotegpu ssh-sessions recording SESSION_ID [-o FILE]     (asciicast v2; ``asciinema play FILE``)

The server is ``--server`` or REMOTEGPU_URL (default http://127.0.0.1:8080), the
credential ``--token`` or REMOTEGPU_TOKEN. Exit status: 0 done, 1 the API refused (its
error on stderr), 2 bad arguments. Stdlib only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from remotegpu.entrypoints.api_client import ApiError, call as _call, request_bytes as _request


def cmd_ls(args) -> int:
    page = _call(args, "GET", "/api/v1/ssh-sessions", environment_id=args.environment, workspace_id=args.workspace,
                 user_id=args.user, limit=args.limit)
    if args.json:
        print(json.dumps(page["items"], indent=2, ensure_ascii=False))
        return 0
    rows = [("ID", "STARTED", "USER", "ENVIRONMENT", "KIND", "FROM", "ENDED", "CHANNELS", "RECORDED")]
    for i in page["items"]:
        rows.append((i["id"], i["started_at"][:19], i["username"], i["environment_name"], i["kind"], i["client_address"],
                     i["end_reason"] or "open", ",".join(i["channels"]) or "-", "yes" if i.get("recorded") else "-"))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
    return 0


def cmd_recording(args) -> int:
    data = _request(args, "GET", f"/api/v1/ssh-sessions/{args.session_id}/recording")
    if args.output and args.output != "-":
        with open(args.output, "wb") as f:
            f.write(data)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    return 0


def add_ssh_sessions_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", default=os.environ.get("REMOTEGPU_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--token", default=os.environ.get("REMOTEGPU_TOKEN", ""))
    sub = parser.add_subparsers(dest="ssh_sessions_command", required=True)
    p = sub.add_parser("ls", help="stays through the SSH gateway, newest first")
    p.add_argument("--environment", help="environment id")
    p.add_argument("--workspace", help="workspace id")
    p.add_argument("--user", help="user id")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true", help="print the API's answer")
    p.set_defaults(ssh_sessions_fn=cmd_ls)
    p = sub.add_parser("recording", help="a recorded session's asciicast v2 file")
    p.add_argument("session_id")
    p.add_argument("-o", "--output", help="write it to this file (default: stdout)")
    p.set_defaults(ssh_sessions_fn=cmd_recording)


def cmd_ssh_sessions(args) -> int:
    try:
        return args.ssh_sessions_fn(args)
    except ApiError as exc:
        print(f"remotegpu ssh-sessions: {exc}", file=sys.stderr)
        return 1
