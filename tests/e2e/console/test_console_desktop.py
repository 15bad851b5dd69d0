"""The remote desktop in the browser, on a real container of the desktop image:
guacd (Debian bullseye's 1.3, unpacked by deploy/guacd/fetch.sh) started here on a free
port, the platform's Guacamole websocket tunnel on the environment's desktop app host
(``{env}--desktop.localhost``), guacamole-common-js in Chromium, x11vnc + XFCE + xterm in
the container. Typing into the xterm there changes the pixels in the browser (screenshots
compared) and runs the command in the container; a stranger gets 404 from the handshake
and the tunnel refuses a request without the app cookie.

Without Docker, the desktop image or guacd: skipped on a laptop, failed in CI (``CI=true``).
The scope's containers and volumes, and the guacd started here, are removed at the end.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest
from playwright.sync_api import expect

from tests.e2e.console.conftest import _missing, login_ui
from tests.support.app_hosts import app_origin
from tests.support.components import docker_with_image, remove_scope
from tests.support.live_server import LiveServer, free_port, live_server

REPO = Path(__file__).resolve().parents[3]
IMAGE = os.environ.get("REMOTEGPU_DESKTOP_IMAGE", "remotegpu/desktop:latest")
GUACD = os.environ.get("REMOTEGPU_TEST_GUACD", "/var/cache/remotegpu/guacd-1.3.0/guacd")
FAKE_GPUS = os.environ.get("REMOTEGPU_E2E_FAKE_GPUS", "2xNVIDIA A100-SXM4-80GB")


@pytest.fixture(scope="module")
def docker():
    # The image is built from the local base when missing or stale (about a minute; nothing pulled).
    build = subprocess.run([str(REPO / "deploy/images/build-desktop.sh"), "--if-docker"], capture_output=True, text=True)
    if build.returncode != 0:
        _missing(f"the desktop image could not be built: {build.stderr[-2000:]}")
    return docker_with_image(IMAGE)


@pytest.fixture(scope="module")
def guacd(tmp_path_factory) -> Iterator[str]:
    if not Path(GUACD).exists():
        _missing(f"guacd is not unpacked at {GUACD} (deploy/ci/services.d/desktop.sh)")
    port = free_port()
    log = (tmp_path_factory.mktemp("guacd") / "guacd.log").open("w")
    proc = subprocess.Popen([GUACD, "-f", "-b", "127.0.0.1", "-l", str(port), "-L", "info"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None, "guacd exited at start"
            assert time.monotonic() < deadline, "guacd did not listen"
            time.sleep(0.1)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # guacd forks one child per connection: its own process group
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def server(console_built, docker, guacd, tmp_path_factory) -> Iterator[LiveServer]:
    scope = f"desk{os.getpid()}{secrets.token_hex(3)}"
    try:
        with live_server(
            tmp_path_factory.mktemp("console-desktop"),
            REMOTEGPU_RUNTIME="docker", REMOTEGPU_DOCKER_SCOPE=scope, REMOTEGPU_AGENT_FAKE_GPUS=FAKE_GPUS,
            REMOTEGPU_AGENT_NAME=f"host-{scope}", REMOTEGPU_GUACD_ADDRESS=guacd, REMOTEGPU_DESKTOP_IMAGE=IMAGE,
            REMOTEGPU_LOGIN_LIMIT_PER_IP="10000", REMOTEGPU_LOGIN_LIMIT_PER_ACCOUNT="1000",
        ) as srv:
            srv.scope = scope
            yield srv
    finally:
        remove_scope(docker, scope)
    assert not docker.containers.list(all=True, filters={"label": f"remotegpu.scope={scope}"})


def _personal_workspace(server: LiveServer, token: str) -> str:
    status, body = server.request("GET", "/api/v1/workspaces", token=token)
    assert status == 200, body
    return next(w["id"] for w in body["items"] if w["is_personal"])


def _wait_running(server: LiveServer, token: str, env_id: str, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status, env = server.request("GET", f"/api/v1/environments/{env_id}", token=token)
        if status == 200 and env["status"] == "running":
            return env
        assert time.monotonic() < deadline, f"environment did not run: {status} {env}"
        time.sleep(0.5)


def _screen(page) -> bytes:
    return page.get_by_test_id("desktop-screen").screenshot(animations="disabled")


def test_desktop_in_the_browser(make_page, ui, server, docker):
    owner = ui.unique("desk")
    token = server.signup(owner, ui.password)
    ws = _personal_workspace(server, token)
    # The catalog lists the desktop variant; an environment made from it has a desktop.
    status, images = server.request("GET", "/api/v1/images", token=token)
    assert status == 200, images
    desktop = next(i for i in images["items"] if i["name"] == "desktop")
    assert desktop["reference"] == IMAGE and desktop["visibility"] == "platform", desktop
    status, env = server.request("POST", "/api/v1/environments", {
        "name": "desk", "workspace_id": ws, "gpu_count": 0, "cpu_cores": 1, "memory_gib": 2, "image": desktop["reference"],
    }, token=token)
    assert status == 202, env
    env_id = env["id"]
    _wait_running(server, token, env_id)
    status, access = server.request("GET", f"/api/v1/environments/{env_id}/access", token=token)
    assert status == 200, access
    port = server.url.rsplit(":", 1)[1]
    assert access["desktop"] == {"url": f"{app_origin(env_id, int(port), 'desktop')}/"}
    container = docker.containers.list(filters={"label": f"remotegpu.env_id={env_id}"})[0]
    # The VNC server listens in the container, published on the host's private address only.
    bindings = container.attrs["HostConfig"]["PortBindings"]["5900/tcp"]
    assert bindings[0]["HostIp"] == "127.0.0.1", bindings

    # The tunnel without the app cookie: refused (the handshake goes through the console).
    req = urllib.request.Request(f"http://127.0.0.1:{port}/_remotegpu/tunnel",
                                 headers={"Host": f"{env_id}--desktop.localhost:{port}"})
    try:
        urllib.request.urlopen(req, timeout=10)
        raise AssertionError("the tunnel answered without a sign-in")
    except urllib.error.HTTPError as e:
        assert e.code == 401

    page = make_page("zh-CN")
    login_ui(page, owner, ui.password)
    page.goto(f"/environments/{env_id}")
    button = page.get_by_test_id("open-desktop")
    expect(button).to_have_text("打开远程桌面")
    with page.context.expect_page() as opened:
        button.click()
    desk = opened.value
    desk.set_default_timeout(30_000)
    desk.wait_for_load_state()
    assert desk.url.startswith(f"{app_origin(env_id, int(port), 'desktop')}/"), desk.url
    expect(desk.get_by_test_id("desktop-status")).to_have_text("已连接", timeout=60_000)
    expect(desk.locator("#screen canvas").first).to_be_visible()
    # XFCE and the xterm come up inside the first seconds: wait until the picture stays still.
    before = _screen(desk)
    deadline = time.monotonic() + 60
    while True:
        time.sleep(2)
        now = _screen(desk)
        if now == before:
            break
        before = now
        assert time.monotonic() < deadline, "the desktop never settled"
    ui.shot(desk, "desktop-before-typing")

    # Into the xterm (at +40+60 of the 1280x800 desktop): a click there focuses it; the
    # keyboard goes through Guacamole.Keyboard → keysyms → guacd → VNC.
    box = desk.get_by_test_id("desktop-screen").bounding_box()
    scale = desk.evaluate("() => { const c = document.querySelector('#screen canvas'); return c.getBoundingClientRect().width / 1280 }")
    desk.mouse.click(box["x"] + 300 * scale, box["y"] + 200 * scale)
    desk.keyboard.type("echo typed-$((6*7)) > /root/from-desktop.txt\n", delay=30)
    deadline = time.monotonic() + 30
    while container.exec_run(["cat", "/root/from-desktop.txt"])[1].strip() != b"typed-42":
        assert time.monotonic() < deadline, "what was typed did not reach the xterm's shell"
        time.sleep(0.5)
    time.sleep(1)
    after = _screen(desk)
    assert after != before, "the desktop's pixels did not change after typing"
    ui.shot(desk, "desktop-after-typing")

    # Clipboard, browser → desktop: the text sent lands in the desktop's selection (x11vnc
    # sets it from the client's cut text); Shift+Insert pastes it into the xterm's command line.
    desk.locator("#clipboard-toggle").click()
    desk.get_by_test_id("desktop-clipboard").fill("clip-$((7*6))")
    desk.locator("#clipboard-send").click()
    time.sleep(1)
    desk.keyboard.type("echo ", delay=30)
    desk.keyboard.press("Shift+Insert")
    time.sleep(1.5)  # X delivers the selection asynchronously: let the paste land before typing on
    desk.keyboard.type(" > /root/clip.txt\n", delay=30)
    deadline = time.monotonic() + 30
    while container.exec_run(["cat", "/root/clip.txt"])[1].strip() != b"clip-42":
        assert time.monotonic() < deadline, f"the clipboard did not reach the desktop: {container.exec_run(['cat', '/root/clip.txt'])[1]!r}"
        time.sleep(0.5)

    # A stranger: 404 from the console's handshake for that desktop, in the browser too.
    stranger = ui.unique("stranger")
    server.signup(stranger, ui.password)
    other = make_page()
    login_ui(other, stranger, ui.password)
    answer = other.goto(f"/api/v1/environments/{env_id}/apps/desktop/authorize")
    assert answer.status == 404
    # ... and opening the desktop's host directly leads to the same handshake, and the same 404.
    answer = other.goto(f"{app_origin(env_id, int(port), 'desktop')}/")
    assert answer.status == 404

    # Access ends while the desktop is open (the owner is disabled): the tunnel closes within
    # the re-check interval and the page says why.
    status, me = server.request("GET", "/api/v1/users/me", token=token)
    assert status == 200, me
    status, body = server.request("PATCH", f"/api/v1/users/{me['id']}", {"is_active": False}, token=ui.admin_token())
    assert status == 200, body
    expect(desk.get_by_test_id("desktop-status")).to_have_text("你对此实例的访问权限已结束。", timeout=20_000)
    ui.shot(desk, "desktop-revoked")
