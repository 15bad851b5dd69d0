"""``remotegpu billing``: an admin sets a price and books money, adjustments and credit
for a user's workspace; the user reads balance, ledger, bills and a bill's CSV with it;
refusals come back as the API's errors (exit 1), bad amounts as usage errors (exit 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone

from tests.support.live_server import live_server

MODEL = "NVIDIA A100-SXM4-80GB"


def run(*args, env):
    return subprocess.run([sys.executable, "-m", "remotegpu.entrypoints.cli", "billing", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_billing_cli_for_admins_and_users(tmp_path):
    with live_server(tmp_path) as srv:
        admin = {**os.environ, "REMOTEGPU_URL": srv.url, "REMOTEGPU_TOKEN": srv.login("admin", "admin-password-123")}
        user = {**os.environ, "REMOTEGPU_URL": srv.url, "REMOTEGPU_TOKEN": srv.signup("payer")}
        ws = json.loads(run("balance", "--json", env=user).stdout)["workspace_id"]

        out = run("set-price", "gpu", "36", "--model", MODEL, env=admin)
        assert out.returncode == 0, out.stderr
        out = run("prices", "--json", env=user)
        assert [(p["kind"], p["model"], p["unit_price"]) for p in json.loads(out.stdout)] == [("gpu", MODEL, 3600)]
        assert "36.00 CNY" in run("prices", env=user).stdout

        assert run("topup", "100", "--workspace", ws, "--reason", "bank transfer 7", "--reference", "tx-7", env=admin).returncode == 0
        again = run("topup", "100", "--workspace", ws, "--reason", "bank transfer 7", "--reference", "tx-7", env=admin)
        assert again.returncode == 1 and "409 duplicate_reference" in again.stderr  # booked once
        assert run("adjust", "-2.50", "--workspace", ws, "--reason", "support fee", env=admin).returncode == 0
        assert run("credit", "10", "--workspace", ws, "--reason", "welcome", env=admin).returncode == 0

        out = run("balance", env=user)
        assert out.returncode == 0 and "balance        107.50 CNY" in out.stdout
        ledger = json.loads(run("ledger", "--json", env=user).stdout)
        assert sorted((e["kind"], e["amount"]) for e in ledger) == [("adjustment", -250), ("credit", 1000), ("topup", 10000)]
        period = datetime.now(timezone.utc).strftime("%Y-%m")
        out = run("bills", env=user)
        assert out.returncode == 0 and period in out.stdout and "-7.50" in out.stdout  # adjustments in the user's favour
        bill = json.loads(run("bill", period, "--json", env=user).stdout)
        assert [(a["kind"], a["reason"]) for a in bill["adjustments"]] == [("adjustment", "support fee"), ("credit", "welcome")]
        csv_text = run("bill", period, "--csv", env=user).stdout
        assert csv_text.startswith("period,environment_id,kind") and f"{period},,net,,,,,-750" in csv_text
        assert "support fee" in run("bill", period, env=user).stdout

        # Users may not book money; another tenant's wallet is not found; amounts are exact.
        refused = run("topup", "5", "--reason", "free money", env=user)
        assert refused.returncode == 1 and "403" in refused.stderr
        other = {**user, "REMOTEGPU_TOKEN": srv.signup("stranger")}
        assert "404" in run("balance", "--workspace", ws, env=other).stderr
        bad = run("adjust", "1.234", "--workspace", ws, "--reason", "x", env=admin)
        assert bad.returncode == 2 and "at most two decimals" in bad.stderr
        assert run("balance", env={**user, "REMOTEGPU_TOKEN": "bad"}).returncode == 1
