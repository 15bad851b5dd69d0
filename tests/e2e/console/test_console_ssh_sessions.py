"""The SSH gateway's audit page: an admin sees who entered which environment, from where,
when, for how long and who was cut off, in English and Chinese; others cannot open it.

The records are written into the server's database the way the gateway writes them
(``SqlSshSessionLog``); the gateway itself, with real OpenSSH clients, is tested in
tests/integration/test_ssh_gateway.py."""

from __future__ import annotations

import asyncio
import threading
import uuid
from datetime import datetime, timedelta, timezone

from playwright.sync_api import expect

from remotegpu.adapters.access.ssh_sessions import SqlSshSessionLog
from remotegpu.adapters.db.engine import create_engine, create_session_factory
from remotegpu.application.environments.ssh_gateway import SshSession


def _seed(server, env_name: str) -> str:
    db = server.log_path.parent / "remotegpu.db"
    env_id = str(uuid.uuid4())
    now = datetime.now(timezone.utc).replace(microsecond=0)

    async def go() -> None:
        engine = create_engine(f"sqlite+aiosqlite:///{db}")
        log = SqlSshSessionLog(create_session_factory(engine))
        common = dict(user_id=str(uuid.uuid4()), environment_id=env_id, workspace_id=str(uuid.uuid4()),
                      environment_name=env_name, client_address="203.0.113.7", key_fingerprint="SHA256:e2eFingerprint")
        await log.add(SshSession(id=str(uuid.uuid4()), username="ssh-alice", kind="session", started_at=now - timedelta(minutes=5),
                                 ended_at=now - timedelta(minutes=5) + timedelta(seconds=125), end_reason="closed",
                                 channels=["shell", "sftp"], **common))
        await log.add(SshSession(id=str(uuid.uuid4()), username="ssh-mallory", kind="jump", started_at=now - timedelta(minutes=1),
                                 ended_at=now, end_reason="revoked", channels=[], **common))
        await engine.dispose()

    # Playwright's sync API keeps an event loop in this thread: seed from another one.
    worker = threading.Thread(target=lambda: asyncio.run(go()))
    worker.start()
    worker.join(30)
    return env_id


def test_admin_reads_the_ssh_session_record_in_both_languages(make_page, ui, server):
    env_id = _seed(server, "gw-e2e")
    page = make_page()
    ui.login(page, "admin", "admin-password-123")
    page.get_by_test_id("nav-admin").click()
    page.get_by_test_id("nav-admin-ssh-sessions").click()
    page.wait_for_url("**/admin/ssh-sessions")
    page.get_by_test_id("ssh-sessions-filter").fill(env_id)
    page.get_by_test_id("ssh-sessions-filter").press("Enter")
    table = page.get_by_test_id("ssh-sessions-table")
    expect(table.locator(".el-table__row")).to_have_count(2)
    first, second = table.locator(".el-table__row").nth(0), table.locator(".el-table__row").nth(1)
    expect(first).to_contain_text("ssh-mallory")  # newest first
    expect(first).to_contain_text("Jump (-J)")
    expect(first).to_contain_text("Access revoked")
    expect(second).to_contain_text("ssh-alice")
    expect(second).to_contain_text("gw-e2e")
    expect(second).to_contain_text("203.0.113.7")
    expect(second).to_contain_text("2m 5s")
    expect(second).to_contain_text("shell, sftp")
    ui.shot(page, "admin-ssh-sessions")

    zh = make_page(locale="zh-CN")
    ui.login(zh, "admin", "admin-password-123")
    zh.goto("/admin/ssh-sessions")
    zh.get_by_test_id("ssh-sessions-filter").fill(env_id)
    zh.get_by_test_id("ssh-sessions-filter").press("Enter")
    table = zh.get_by_test_id("ssh-sessions-table")
    expect(table.locator(".el-table__row")).to_have_count(2)
    expect(table).to_contain_text("权限已撤销")
    expect(table).to_contain_text("跳板 (-J)")
    expect(zh.locator("h1")).to_contain_text("SSH 会话")
    ui.shot(zh, "admin-ssh-sessions-zh")


def test_non_admin_cannot_open_the_ssh_session_record(page, ui):
    name = ui.user("nosy")
    ui.login(page, name)
    page.goto("/admin/ssh-sessions")
    page.wait_for_url("**/environments")
    expect(page.get_by_test_id("ssh-sessions-table")).to_have_count(0)
