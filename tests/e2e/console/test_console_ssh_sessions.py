"""The SSH gateway's audit page: an admin sees who entered which environment, from where,
when, for how long and who was cut off, in English and Chinese; others cannot open it.
A recorded session is replayed in the page's terminal player.

The records are written into the server's database the way the gateway writes them
(``SqlSshSessionLog``); the gateway itself, with real OpenSSH clients, is tested in
tests/integration/test_ssh_gateway.py."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from datetime import datetime, timedelta, timezone

from playwright.sync_api import expect

from remotegpu.adapters.access.ssh_sessions import SqlSshSessionLog
from remotegpu.adapters.db.engine import create_engine, create_session_factory
from remotegpu.adapters.storage.local_store import LocalObjectStore
from remotegpu.application.environments.ssh_gateway import CastRecorder, GatewayAccess, SshSession
from remotegpu.application.shared.clock import SystemClock


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


def _seed_recorded(server, env_name: str) -> str:
    """A closed terminal session whose recording the gateway kept (the server's object store)."""
    data = server.log_path.parent
    env_id = str(uuid.uuid4())
    now = datetime.now(timezone.utc).replace(microsecond=0)

    async def go() -> None:
        engine = create_engine(f"sqlite+aiosqlite:///{data / 'remotegpu.db'}")
        log = SqlSshSessionLog(create_session_factory(engine))
        access = GatewayAccess(uow=None, entry=None, log=log, clock=SystemClock(),  # type: ignore[arg-type]
                               recordings=LocalObjectStore(data / "storage"), record_sessions=True)
        session = SshSession(id=str(uuid.uuid4()), user_id=str(uuid.uuid4()), username="ssh-rec", environment_id=env_id,
                             workspace_id=str(uuid.uuid4()), environment_name=env_name, kind="session",
                             client_address="203.0.113.9", key_fingerprint="SHA256:rec", started_at=now - timedelta(minutes=2),
                             channels=["shell"])
        await log.add(session)
        rec = CastRecorder(80, 24, "xterm-256color", 1000.0)
        rec.output(b"root@env:~# echo replay-$((6*7))\r\n", 1000.2)
        rec.output(b"replay-42\r\n", 1000.4)
        rec.output("root@env:~# echo \u96ea\r\n\u96ea-tail\r\n".encode(), 1001.0)
        await access.save_recording(session, rec.cast())
        await access.closed(session, "closed")
        await engine.dispose()

    worker = threading.Thread(target=lambda: asyncio.run(go()))
    worker.start()
    worker.join(30)
    return env_id


def test_admin_replays_a_recorded_session_in_both_languages(make_page, ui, server):
    env_id = _seed_recorded(server, "gw-rec")
    for locale, replay, title, to_end in (("en-US", "Replay", "Recording of ssh-rec in gw-rec", "Jump to end"),
                                         ("zh-CN", "回放", "ssh-rec 在 gw-rec 中的会话录像", "跳到结尾")):
        page = make_page(locale=locale)
        ui.login(page, "admin", "admin-password-123")
        page.goto("/admin/ssh-sessions")
        page.get_by_test_id("ssh-sessions-filter").fill(env_id)
        page.get_by_test_id("ssh-sessions-filter").press("Enter")
        table = page.get_by_test_id("ssh-sessions-table")
        expect(table.locator(".el-table__row")).to_have_count(1)
        with page.expect_response(lambda r: r.url.endswith("/recording")) as got:
            table.get_by_test_id("ssh-session-replay").click()
        assert got.value.status == 200 and got.value.headers["content-type"].startswith("application/x-asciicast")
        dialog = page.locator(".el-dialog")
        expect(dialog).to_contain_text(title)
        player = page.get_by_test_id("cast-player")
        expect(player.get_by_test_id("cast-end")).to_have_text(to_end)
        # Playing in real time (a second and a bit): the whole session appears, in order.
        terminal = player.get_by_test_id("cast-terminal").locator(".xterm-rows")
        expect(terminal).to_contain_text("\u96ea-tail", timeout=10_000)
        rows = terminal.inner_text()
        assert rows.index("echo replay-$((6*7))") < rows.index("replay-42") < rows.index("\u96ea-tail")
        expect(player.get_by_test_id("cast-time")).to_have_text("0:01 / 0:01")
        player.get_by_test_id("cast-restart").click()
        player.get_by_test_id("cast-end").click()  # straight to the end
        expect(terminal).to_contain_text("\u96ea-tail")
        with page.expect_download() as download:
            page.get_by_test_id("ssh-replay-download").click()
        lines = open(download.value.path(), encoding="utf-8").read().splitlines()
        assert json.loads(lines[0])["version"] == 2 and json.loads(lines[-1])[2].endswith("\u96ea-tail\r\n")
        ui.shot(page, f"admin-ssh-replay-{locale}")


def test_non_admin_cannot_open_the_ssh_session_record(page, ui):
    name = ui.user("nosy")
    ui.login(page, name)
    page.goto("/admin/ssh-sessions")
    page.wait_for_url("**/environments")
    expect(page.get_by_test_id("ssh-sessions-table")).to_have_count(0)
