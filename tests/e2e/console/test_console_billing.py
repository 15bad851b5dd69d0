"""Billing in the browser: an admin sets prices and tops a wallet up; a user whose GPU
environment runs sees the balance go down, the ledger's usage charges, usage by GPU model,
the month's draft bill with its line items and its CSV; the page in Chinese."""

from __future__ import annotations

import time
from typing import Iterator

import pytest
from playwright.sync_api import expect

from tests.e2e.console.conftest import PASSWORD, login_ui, shot, unique
from tests.support.live_server import LiveServer, live_server

MODEL = "NVIDIA A100-SXM4-80GB"


@pytest.fixture(scope="module")
def billing_server(console_built, tmp_path_factory) -> Iterator[LiveServer]:
    # Its own server: billing enforced, a metering pass every second (the shared one: defaults).
    with live_server(tmp_path_factory.mktemp("console-billing"), REMOTEGPU_BILLING_ENABLED="true",
                     REMOTEGPU_BILLING_TICK_SECONDS="1", REMOTEGPU_AGENT_FAKE_GPUS=f"2x{MODEL}",
                     REMOTEGPU_HEARTBEAT_SECONDS="1") as srv:
        yield srv


@pytest.fixture
def bpage(browser, billing_server):
    contexts = []

    def make(locale: str = "en-US"):
        context = browser.new_context(base_url=billing_server.url, locale=locale, viewport={"width": 1440, "height": 900},
                                      accept_downloads=True)
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


def _wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_prices_topup_usage_bill_and_csv_in_the_console(billing_server, bpage):
    srv = billing_server
    admin_token = srv.login("admin", "admin-password-123")

    # The admin sets prices in the console.
    page = bpage()
    login_ui(page, "admin", "admin-password-123")
    page.get_by_test_id("nav-billing").click()
    page.wait_for_url("**/billing")
    page.get_by_role("tab", name="Prices").click()
    page.get_by_test_id("billing-price-model").fill(MODEL)
    page.get_by_test_id("billing-price-value").fill("36")
    page.get_by_test_id("billing-price-save").click()
    expect(page.get_by_test_id("billing-prices")).to_contain_text(MODEL)
    expect(page.get_by_test_id("billing-prices")).to_contain_text("36.00 CNY")
    # … and tops up their own workspace (an offline transfer), seen in the ledger.
    page.get_by_role("tab", name="Wallet").click()
    page.get_by_test_id("billing-book-amount").fill("100")
    page.get_by_test_id("billing-book-reason").fill("bank transfer 42")
    page.get_by_test_id("billing-book").click()
    expect(page.get_by_test_id("billing-ledger")).to_contain_text("bank transfer 42")
    expect(page.get_by_test_id("billing-balance")).to_contain_text("100.00 CNY")
    shot(page, "billing-admin")

    # A user's workspace gets money, then a GPU environment runs and is charged.
    name = unique("payer")
    user_token = srv.signup(name, PASSWORD)
    ws = srv.request("GET", "/api/v1/workspaces", token=user_token)[1]["items"][0]["id"]
    code, _ = srv.request("POST", "/api/v1/billing/wallet/entries",
                          {"workspace_id": ws, "kind": "topup", "amount": 5000, "reason": "transfer", "reference": name},
                          token=admin_token)
    assert code == 201
    code, env = srv.request("POST", "/api/v1/environments", {"name": "paid", "workspace_id": ws, "gpu_count": 1,
                                                             "gpu_model": MODEL, "cpu_cores": 1, "memory_gib": 1},
                            token=user_token)
    assert code == 202, env
    _wait_for(lambda: srv.request("GET", f"/api/v1/environments/{env['id']}", token=user_token)[1]["status"] == "running")
    _wait_for(lambda: srv.request("GET", f"/api/v1/billing/wallet?workspace_id={ws}", token=user_token)[1]["balance"] < 5000)
    code, _ = srv.request("POST", "/api/v1/billing/wallet/entries",
                          {"workspace_id": ws, "kind": "adjustment", "amount": -250, "reason": "support fee for the outage"},
                          token=admin_token)
    assert code == 201

    page = bpage()
    login_ui(page, name)
    page.goto("/billing")
    expect(page.get_by_test_id("billing-ledger")).to_contain_text("Usage")
    expect(page.get_by_test_id("billing-ledger")).to_contain_text("Top-up")
    balance = page.get_by_test_id("billing-balance").inner_text()
    assert "CNY" in balance and "50.00" not in balance.split("\n")[-1]
    page.get_by_role("tab", name="Usage").click()
    page.get_by_test_id("billing-group").get_by_text("By GPU model").click()
    expect(page.get_by_test_id("billing-usage")).to_contain_text(MODEL)
    page.get_by_role("tab", name="Bills").click()
    expect(page.get_by_test_id("billing-bills")).to_contain_text("Draft")
    page.get_by_test_id("billing-bill-lines").first.click()
    expect(page.get_by_test_id("billing-bill")).to_contain_text(env["id"])
    expect(page.get_by_test_id("billing-bill")).to_contain_text("GPU")
    # Not usage, but on the bill: the admin's adjustment, with its reason.
    expect(page.get_by_test_id("billing-bill-adjustments")).to_contain_text("support fee for the outage")
    expect(page.get_by_test_id("billing-bill-adjustments")).to_contain_text("Adjustment")
    expect(page.get_by_test_id("billing-bill-adjustments")).to_contain_text("2.50")
    with page.expect_download() as download:
        page.get_by_test_id("billing-bill-csv").first.click()
    csv_text = open(download.value.path()).read()
    assert csv_text.startswith("period,environment_id,kind") and env["id"] in csv_text
    assert "support fee for the outage" in csv_text and ",net,," in csv_text
    shot(page, "billing-user")

    # Plans: the admin offers a monthly plan price; the user buys one, then cancels it (refund).
    code, _ = srv.request("POST", "/api/v1/billing/prices", {"kind": "gpu_month", "model": MODEL, "unit_price": 1000},
                          token=admin_token)
    assert code == 201
    page.reload()
    page.get_by_role("tab", name="Plans").click()
    page.get_by_test_id("billing-plan-model").click()
    page.get_by_role("option", name=MODEL).click()
    expect(page.get_by_test_id("billing-plan-total")).to_contain_text("10.00 CNY")
    page.get_by_test_id("billing-plan-buy").click()
    expect(page.get_by_test_id("billing-plan-status")).to_contain_text("Active")
    page.get_by_test_id("billing-plan-cancel").click()
    page.locator(".el-message-box__btns .el-button--primary").last.click()
    expect(page.get_by_test_id("billing-plan-status")).to_contain_text("Cancelled")
    entries = srv.request("GET", f"/api/v1/billing/wallet/entries?workspace_id={ws}", token=user_token)[1]["items"]
    assert [e["amount"] for e in entries if e["kind"] == "plan"] == [-1000]
    assert [e["kind"] for e in entries].count("refund") == 1
    shot(page, "billing-plans")

    # The same page in Chinese.
    zh = bpage(locale="zh-CN")
    login_ui(zh, name)
    zh.goto("/billing")
    expect(zh.get_by_role("tab", name="钱包")).to_be_visible()
    expect(zh.get_by_test_id("billing-ledger")).to_contain_text("用量扣费")
    shot(zh, "billing-zh")
    srv.request("DELETE", f"/api/v1/environments/{env['id']}", token=user_token)
