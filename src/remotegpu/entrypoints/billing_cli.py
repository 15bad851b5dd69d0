"""``remotegpu billing …``: wallets, usage and bills from a shell or a script, over the API.

    remotegpu billing balance [--workspace WS] [--json]
    remotegpu billing ledger [--workspace WS] [--limit N] [--json]
    remotegpu billing usage [--workspace WS] [--by day|gpu_model|user|environment|kind|job] [--start T] [--end T] [--json]
    remotegpu billing bills [--workspace WS] [--json]
    remotegpu billing bill YYYY-MM [--workspace WS] [--csv | --json]
    remotegpu billing prices [--history] [--json]
    remotegpu billing topup|adjust|credit|refund AMOUNT --reason R [--workspace WS] [--reference REF] [--expires T]   (admins)
    remotegpu billing set-price KIND UNIT_PRICE [--model M] [--from T]                                              (admins)

AMOUNT and UNIT_PRICE are in the currency's major unit with at most two decimals
("100", "-2.50"); ``--json`` prints the API's answer (amounts in minor units). Without
``--workspace`` the caller's personal workspace is meant. The server is ``--server`` or
REMOTEGPU_URL (default http://127.0.0.1:8080), the credential ``--token`` or
REMOTEGPU_TOKEN (an API token). Exit status: 0 done, 1 the API refused (its error on
stderr), 2 bad arguments. Stdlib only (like the agent's CLI).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from decimal import Decimal, InvalidOperation
from typing import Any

from remotegpu.entrypoints.api_client import ApiError, call as _call, request_bytes as _request


def minor(text: str) -> int:
    """"12.34" → 1234 (exact; at most two decimals)."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not an amount: {text!r}") from None
    cents = value * 100
    if cents != cents.to_integral_value():
        raise argparse.ArgumentTypeError(f"at most two decimals: {text!r}")
    return int(cents)


def money(amount: int) -> str:
    sign = "-" if amount < 0 else ""
    return f"{sign}{abs(amount) // 100}.{abs(amount) % 100:02d}"


def _workspace(args) -> str:
    if args.workspace:
        return args.workspace
    items = _call(args, "GET", "/api/v1/workspaces")["items"]
    personal = next((w for w in items if w.get("is_personal")), None)
    if personal is None:
        raise ApiError("no personal workspace: pass --workspace")
    return personal["id"]


def _table(rows: list[tuple]) -> None:
    rows = [tuple(str(v) for v in r) for r in rows]
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())


def _print_json(value: Any) -> int:
    print(json.dumps(value, indent=2, ensure_ascii=False))
    return 0


def cmd_balance(args) -> int:
    w = _call(args, "GET", "/api/v1/billing/wallet", workspace_id=_workspace(args))
    if args.json:
        return _print_json(w)
    cur = w["currency"]
    print(f"balance        {money(w['balance'])} {cur}")
    print(f"this month     {money(w['month_charges'])} {cur}")
    print(f"per hour now   {money(w['hourly_burn'])} {cur}")
    if w["in_arrears_since"]:
        print(f"in arrears since {w['in_arrears_since']}")
    return 0


def cmd_ledger(args) -> int:
    page = _call(args, "GET", "/api/v1/billing/wallet/entries", workspace_id=_workspace(args), limit=args.limit)
    if args.json:
        return _print_json(page["items"])
    _table([("AT", "KIND", "AMOUNT", "PERIOD", "REASON")]
           + [(e["at"], e["kind"], money(e["amount"]), e["period"], e["reason"]) for e in page["items"]])
    return 0


def cmd_usage(args) -> int:
    u = _call(args, "GET", "/api/v1/billing/usage", workspace_id=_workspace(args), group_by=args.by, start=args.start, end=args.end)
    if args.json:
        return _print_json(u)
    _table([(args.by.upper(), "SECONDS", "AMOUNT")] + [(g["key"] or "-", g["seconds"], money(g["amount"])) for g in u["groups"]]
           + [("total", "", money(u["total"]))])
    return 0


def cmd_bills(args) -> int:
    page = _call(args, "GET", "/api/v1/billing/bills", workspace_id=_workspace(args))
    if args.json:
        return _print_json(page["items"])
    _table([("PERIOD", "STATUS", "USAGE", "ADJUSTMENTS", "NET", "CURRENCY")]
           + [(b["period"], b["status"], money(b["total"]), money(-b["adjustments_total"]), money(b["net"]), b["currency"])
              for b in page["items"]])
    return 0


def cmd_bill(args) -> int:
    ws = _workspace(args)
    period = urllib.parse.quote(args.period, safe="")
    if args.csv:
        sys.stdout.write(_request(args, "GET", f"/api/v1/billing/bills/{period}/csv", query={"workspace_id": ws}).decode())
        return 0
    b = _call(args, "GET", f"/api/v1/billing/bills/{period}", workspace_id=ws)
    if args.json:
        return _print_json(b)
    print(f"bill {b['period']} ({b['status']}), {b['currency']}")
    _table([("ENVIRONMENT", "KIND", "MODEL", "QTY", "UNIT PRICE", "SECONDS", "AMOUNT")]
           + [(x["environment_id"], x["kind"], x["model"] or "-", x["quantity"], money(x["unit_price"]), x["seconds"],
               money(x["amount"])) for x in b["lines"]])
    if b["adjustments"]:
        print()
        _table([("AT", "KIND", "BY", "REASON", "AMOUNT")]
               + [(a["at"], a["kind"], a["actor_id"] or "platform", a["reason"], money(-a["amount"])) for a in b["adjustments"]])
    print(f"\nusage {money(b['total'])}  adjustments {money(-b['adjustments_total'])}  net {money(b['net'])}")
    return 0


def cmd_prices(args) -> int:
    page = _call(args, "GET", "/api/v1/billing/prices", history="true" if args.history else None)
    if args.json:
        return _print_json(page["items"])
    _table([("KIND", "MODEL", "PRICE", "PER", "FROM")]
           + [(p["kind"], p["model"] or "-", f"{money(p['unit_price'])} {p['currency']}", p["period"], p["effective_from"])
              for p in page["items"]])
    return 0


def cmd_post(args) -> int:
    body = {"workspace_id": _workspace(args), "kind": args.kind, "amount": args.amount, "reason": args.reason}
    if args.reference:
        body["reference"] = args.reference
    if getattr(args, "expires", None):
        body["expires_at"] = args.expires
    entry = _call(args, "POST", "/api/v1/billing/wallet/entries", body)
    if args.json:
        return _print_json(entry)
    print(f"{entry['id']}  {entry['kind']}  {money(entry['amount'])}")
    return 0


def cmd_set_price(args) -> int:
    body = {"kind": args.kind, "model": args.model, "unit_price": args.unit_price}
    if args.start:
        body["effective_from"] = args.start
    price = _call(args, "POST", "/api/v1/billing/prices", body)
    if args.json:
        return _print_json(price)
    print(f"{price['id']}  {price['kind']} {price['model'] or ''} {money(price['unit_price'])} {price['currency']}/{price['period']}"
          f" from {price['effective_from']}")
    return 0


def add_billing_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", default=os.environ.get("REMOTEGPU_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--token", default=os.environ.get("REMOTEGPU_TOKEN", ""))
    sub = parser.add_subparsers(dest="billing_command", required=True)

    def command(name: str, fn, help: str, workspace: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        if workspace:
            p.add_argument("--workspace", help="workspace id (default: your personal workspace)")
        p.add_argument("--json", action="store_true", help="print the API's answer (amounts in minor units)")
        p.set_defaults(billing_fn=fn)
        return p

    command("balance", cmd_balance, "the wallet's balance, this month's charges and the hourly cost now")
    command("ledger", cmd_ledger, "the wallet's ledger, newest first").add_argument("--limit", type=int, default=50)
    p = command("usage", cmd_usage, "usage of a period, grouped")
    p.add_argument("--by", default="day", choices=["day", "gpu_model", "user", "environment", "kind", "job"])
    p.add_argument("--start", help="ISO 8601 (default: this month's start)")
    p.add_argument("--end", help="ISO 8601 (default: now)")
    command("bills", cmd_bills, "the last twelve months' bills")
    p = command("bill", cmd_bill, "one month's bill: lines, adjustments, net")
    p.add_argument("period", help="YYYY-MM")
    p.add_argument("--csv", action="store_true", help="the bill as CSV (what the console downloads)")
    command("prices", cmd_prices, "prices in force now", workspace=False).add_argument("--history", action="store_true")
    for name, kind, what in (("topup", "topup", "book a confirmed transfer"), ("adjust", "adjustment", "an adjustment (either sign)"),
                             ("credit", "credit", "grant credit"), ("refund", "refund", "refund money")):
        p = command(name, cmd_post, f"platform admins: {what}")
        p.add_argument("amount", type=minor, help="in the currency's major unit, e.g. 100 or -2.50")
        p.add_argument("--reason", required=True)
        p.add_argument("--reference", help="booked once per reference (a transfer's id)")
        if kind == "credit":
            p.add_argument("--expires", help="ISO 8601: the unused part expires then")
        p.set_defaults(kind=kind)
    p = command("set-price", cmd_set_price, "platform admins: set a price (from now or a later instant)", workspace=False)
    p.add_argument("kind", choices=["gpu", "cpu", "memory", "disk", "nogpu", "gpu_month", "gpu_year"])
    p.add_argument("unit_price", type=minor, help="per unit per hour (disk: per GiB-day; plans: per GPU-month/year)")
    p.add_argument("--model", default="", help="the GPU model (gpu, gpu_month, gpu_year)")
    p.add_argument("--from", dest="start", help="ISO 8601 (default: now)")


def cmd_billing(args) -> int:
    try:
        return args.billing_fn(args)
    except ApiError as exc:
        print(f"remotegpu billing: {exc}", file=sys.stderr)
        return 1
