"""The environment flow in the browser, on real Docker containers:
register → SSH key → create → Running without reload → terminal echo → JupyterLab on
its own origin → stop → delete; and an attacker's page on an environment's app origin
that tries to take over a visitor's account, and fails at every step.

This module runs its own live server with the Docker runtime (fake GPUs, a private
``REMOTEGPU_DOCKER_SCOPE``) so the web terminal reaches a real shell. Without a Docker
daemon or the base image the module is skipped on a laptop and fails in CI (``CI=true``).
Every container and volume of the scope is removed when the module ends.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from pathlib import Path
from typing import Iterator

import pytest
from playwright.sync_api import expect

from tests.support.app_hosts import app_origin
from tests.support.components import docker_with_image, remove_scope
from tests.support.live_server import LiveServer, live_server
from tests.support.workspaces import join_workspace_live

IMAGE = os.environ.get("REMOTEGPU_BASE_IMAGE", "remotegpu/base:latest")
FAKE_GPUS = os.environ.get("REMOTEGPU_E2E_FAKE_GPUS", "2xNVIDIA A100-SXM4-80GB")
# Running must arrive without a reload, pushed by the live stream (SSE): well under the
# console's 15-second fallback re-read, which only runs while the stream is down.
RUNNING_TIMEOUT_MS = 12_000
STOPPED_TIMEOUT_MS = 90_000


@pytest.fixture(scope="module")
def docker():
    return docker_with_image(IMAGE)


@pytest.fixture(scope="module")
def server(console_built, docker, tmp_path_factory) -> Iterator[LiveServer]:
    """Overrides the session's in-memory server for this module: Docker runtime, private scope."""
    scope = f"ui{os.getpid()}{secrets.token_hex(3)}"
    try:
        with live_server(
            tmp_path_factory.mktemp("console-docker"),
            REMOTEGPU_RUNTIME="docker", REMOTEGPU_DOCKER_SCOPE=scope, REMOTEGPU_AGENT_FAKE_GPUS=FAKE_GPUS,
            REMOTEGPU_AGENT_NAME=f"host-{scope}", REMOTEGPU_BASE_IMAGE=IMAGE,
            REMOTEGPU_LOGIN_LIMIT_PER_IP="10000", REMOTEGPU_LOGIN_LIMIT_PER_ACCOUNT="1000",
        ) as srv:
            srv.scope = scope
            yield srv
    finally:
        remove_scope(docker, scope)
    assert not docker.containers.list(all=True, filters={"label": f"remotegpu.scope={scope}"})


@pytest.fixture
def environments_api(server, ui):
    token = server.signup(ui.unique("probe"), ui.password)
    status, body = server.request("GET", "/api/v1/gpu-types", token=token)
    assert status == 200, body
    assert any(t["free"] > 0 for t in body["items"]), f"no free GPU in the inventory: {body['items']!r}"
    return body["items"]


def create_in_browser(page, ui, model: str, shot: str | None = None, env_var: tuple[str, str] | None = None,
                      secret_var: tuple[str, str] | None = None) -> tuple[str, str]:
    """Fill the create form (GPU card, name, small CPU/memory; one variable under Advanced) and land on the detail page."""
    page.get_by_test_id("nav-create").click()
    page.wait_for_url("**/environments/new")
    card = page.get_by_test_id(f"gpu-card-{model}")
    expect(card).to_contain_text("free")
    card.click()
    env_name = f"e2e-{secrets.token_hex(3)}"
    page.get_by_test_id("create-name").fill(env_name)
    page.get_by_test_id("create-cpu").locator("input").fill("1")
    page.get_by_test_id("create-memory").locator("input").fill("1")
    page.get_by_test_id("create-disk").locator("input").fill("20")
    if env_var:
        page.get_by_test_id("create-advanced").get_by_role("button", name="Advanced").click()
        page.get_by_test_id("create-env-add").click()
        page.get_by_test_id("create-env-key-0").fill(env_var[0])
        page.get_by_test_id("create-env-value-0").fill(env_var[1])
        expect(page.get_by_test_id("summary-env")).to_have_text(env_var[0])
    if secret_var:  # a second row, marked secret: typed into a password field, sent as secret_env
        page.get_by_test_id("create-env-add").click()
        page.get_by_test_id("create-env-key-1").fill(secret_var[0])
        page.get_by_test_id("create-env-secret-1").click()
        page.get_by_test_id("create-env-value-1").fill(secret_var[1])
        expect(page.get_by_test_id("create-env-value-1")).to_have_attribute("type", "password")
    if shot:
        ui.shot(page, shot)
    page.get_by_test_id("create-submit").click()
    page.wait_for_url(re.compile(r".*/environments/[0-9a-f-]{8,}$"))
    expect(page.get_by_test_id("env-title")).to_have_text(env_name)
    expect(page.get_by_test_id("env-disk")).to_have_text("20 GiB")
    if env_var:
        expect(page.get_by_test_id(f"env-var-{env_var[0]}")).to_have_text(f"{env_var[0]}={env_var[1]}")
    if secret_var:  # shown masked, its value nowhere on the page
        expect(page.get_by_test_id(f"env-var-{secret_var[0]}")).to_contain_text(f"{secret_var[0]}=••••••")
        expect(page.locator("body")).not_to_contain_text(secret_var[1])
    # Running arrives through the live stream: no reload here.
    expect(page.locator("[data-testid=env-status][data-status=running]")).to_be_visible(timeout=RUNNING_TIMEOUT_MS)
    return env_name, page.url.rsplit("/", 1)[1]


def delete_in_browser(page, env_name: str) -> None:
    page.get_by_test_id("env-action-delete").click()
    page.locator(".el-message-box__btns .el-button--danger").click()
    # The answer to DELETE leads back to the list. On CI's loaded 2-core machine (right
    # after the main suite) it once took longer than Playwright's default 15 s.
    page.wait_for_url("**/environments", timeout=60_000)
    # The list is fed by the server-sent event stream, not by polling.
    expect(page.get_by_test_id("stream-state")).to_have_class(re.compile("el-tag--success"))
    expect(page.get_by_test_id("env-table")).not_to_contain_text(env_name, timeout=60_000)


def test_environment_lifecycle_in_the_browser(page, ui, server, docker, environments_api):
    model = next(t["model"] for t in environments_api if t["free"] > 0)
    name = ui.user("gpu")
    ui.login(page, name)
    page.get_by_test_id("nav-account").click()
    page.get_by_test_id("ssh-key-input").fill(ui.ssh_public_key())
    page.get_by_test_id("ssh-key-add").click()
    expect(page.get_by_test_id("ssh-key-table")).to_contain_text("SHA256:")

    var_value = f"v{secrets.token_hex(4)}"
    secret_value = f"s{secrets.token_hex(6)}"
    env_name, env_id = create_in_browser(page, ui, model, shot="environment-create", env_var=("E2E_VAR", var_value),
                                         secret_var=("E2E_SECRET", secret_value))
    containers = docker.containers.list(filters={"label": f"remotegpu.env_id={env_id}"})
    assert len(containers) == 1 and containers[0].labels.get("remotegpu.scope") == server.scope
    volume = docker.volumes.get(f"rgpu-vol-{env_id}")
    assert volume.attrs["Labels"].get("remotegpu.disk_gib") == "20"  # recorded, not enforced on overlay2
    expect(page.get_by_test_id("ssh-command")).to_contain_text("ssh")
    expect(page.get_by_test_id("ssh-config")).to_contain_text("Host")
    # The host key the agent read in the container, pushed a beat or two later.
    expect(page.get_by_test_id("ssh-known-hosts")).to_contain_text("ssh-ed25519 AAAA", timeout=30_000)
    ui.shot(page, "environment-detail")

    # The web terminal reaches a shell in the container: the output of echo shows up.
    page.get_by_role("tab", name="Terminal").click()
    expect(page.get_by_test_id("terminal-state")).to_have_text("connected", timeout=30_000)
    marker = f"hello-{secrets.token_hex(4)}"
    page.get_by_test_id("terminal").click()
    page.keyboard.type(f"echo {marker}-$((6*7))\n")
    # The command line holds the unexpanded $((6*7)); only the shell's output has "-42".
    page.wait_for_function(
        "m => (document.querySelector('.xterm-rows')?.innerText ?? '').includes(m)", arg=f"{marker}-42", timeout=15_000
    )
    # The variable given on the create form is set in the container's shell.
    page.keyboard.type("echo var-$E2E_VAR-end\n")
    page.wait_for_function(
        "m => (document.querySelector('.xterm-rows')?.innerText ?? '').includes(m)", arg=f"var-{var_value}-end", timeout=15_000
    )
    # So is the secret one: write-only through the API, an ordinary variable inside.
    page.keyboard.type("echo sec-$E2E_SECRET-end\n")
    page.wait_for_function(
        "m => (document.querySelector('.xterm-rows')?.innerText ?? '').includes(m)", arg=f"sec-{secret_value}-end", timeout=15_000
    )
    ui.shot(page, "environment-terminal")

    page.get_by_role("tab", name="Events").click()
    expect(page.get_by_test_id("env-events")).to_contain_text("Running")
    ui.shot(page, "environment-events")

    # JupyterLab itself, on its own origin ({env}--jupyter.localhost) after the handshake
    # (console session → one-time ticket → app cookie): its page, its scripts (several
    # MiB, streamed) and its websockets; a Python kernel starts.
    page.get_by_role("tab", name="Overview").click()
    with page.context.expect_page() as opened:
        page.get_by_test_id("open-jupyter").click()
    lab = opened.value
    lab.wait_for_load_state()
    port = server.url.rsplit(":", 1)[1]
    assert lab.url.startswith(f"http://{env_id}--jupyter.localhost:{port}/"), lab.url
    assert lab.evaluate("window.opener") is None  # opened with noopener: no handle on the console
    expect(lab.locator(".jp-LabShell")).to_be_visible(timeout=90_000)
    lab.locator(".jp-LauncherCard[data-category='Notebook']").first.click(timeout=60_000)
    expect(lab.locator(".jp-Notebook")).to_be_visible(timeout=60_000)
    # The kernel runs code over the proxied websocket: the output shows the result.
    expect(lab.get_by_text("Python 3 (ipykernel) | Idle")).to_be_visible(timeout=90_000)  # the kernel is up
    cell = lab.locator(".jp-Notebook .jp-Cell .cm-content").first
    cell.click()
    lab.keyboard.type("print(6 * 7, 'through-the-proxy')")
    expect(cell).to_contain_text("through-the-proxy")
    lab.keyboard.press("Shift+Enter")
    expect(lab.locator(".jp-OutputArea-output").first).to_contain_text("42 through-the-proxy", timeout=90_000)
    ui.shot(lab, "jupyterlab-notebook")
    # A JupyterLab terminal too: what is typed reaches a shell in the container.
    lab.goto(lab.url.split("/lab", 1)[0] + "/lab?reset")
    lab.locator(".jp-LauncherCard[data-category='Other'][title*='terminal' i]").first.click(timeout=60_000)
    expect(lab.locator(".jp-Terminal").first).to_be_visible(timeout=30_000)
    lab.locator(".jp-Terminal").first.click()
    lab.keyboard.type("echo jt-$((6*7)) > from-jupyter-terminal.txt\n")
    written = lab.url.split("/lab", 1)[0] + "/files/from-jupyter-terminal.txt"
    for _ in range(60):  # fetched by the page itself: its origin, its app cookie
        answer = lab.evaluate("async u => { const r = await fetch(u); return r.ok ? await r.text() : '' }", written)
        if answer.strip() == "jt-42":
            break
        lab.wait_for_timeout(500)
    else:
        raise AssertionError("the command typed in JupyterLab's terminal did not run")
    lab.close()

    page.get_by_test_id("nav-environments").click()
    row = page.get_by_test_id("env-table").locator(".el-table__row", has_text=env_name)
    expect(row.locator("[data-status=running]")).to_be_visible()
    ui.shot(page, "environments-list")
    row.get_by_role("link", name=env_name).click()

    page.get_by_test_id("env-action-stop").click()
    ui.confirm(page)
    expect(page.locator("[data-testid=env-status][data-status=stopped]")).to_be_visible(timeout=STOPPED_TIMEOUT_MS)
    expect(page.get_by_test_id("env-action-startNoGpu")).to_be_visible()
    delete_in_browser(page, env_name)
    ui.shot(page, "environments-after-delete")
    assert not docker.containers.list(all=True, filters={"label": f"remotegpu.env_id={env_id}"})


ATTACKER = Path(__file__).parent / "attacker"


def wait_running(server: LiveServer, token: str, env_id: str, timeout: float = 240) -> None:
    """(Queued meanwhile on a small machine: the CPU cores of an environment of another test are freed as it goes.)"""
    deadline = time.monotonic() + timeout
    while True:
        status, env = server.request("GET", f"/api/v1/environments/{env_id}", token=token)
        if status == 200 and env["status"] == "running":
            return
        assert time.monotonic() < deadline, f"environment did not run: {status} {env}"
        time.sleep(0.5)


def new_environment(server: LiveServer, token: str, workspace_id: str, name: str, shared: bool = False) -> str:
    status, env = server.request("POST", "/api/v1/environments", {
        "name": name, "workspace_id": workspace_id, "gpu_count": 0, "cpu_cores": 1, "memory_gib": 1, "shared": shared,
    }, token=token)
    assert status == 202, env
    return env["id"]


def personal_workspace(server: LiveServer, token: str) -> str:
    status, body = server.request("GET", "/api/v1/workspaces", token=token)
    assert status == 200, body
    return next(w["id"] for w in body["items"] if w["is_personal"])


def test_a_page_on_an_app_origin_cannot_take_over_the_visitors_account(make_page, ui, server, docker):
    """Mallory shares an environment with the victim (who accepted her invitation to a
    workspace) and sends a link to a page it serves. Root in her container, she serves
    whatever she likes there (here: her own server on JupyterLab's socket). The victim,
    signed in to the console and to their own environment's JupyterLab, opens the link;
    the page tries every way to their account — and each fails."""
    mallory, victim = ui.unique("mallory"), ui.unique("victim")
    mallory_token, victim_token = server.signup(mallory, ui.password), server.signup(victim, ui.password)
    status, team = server.request("POST", "/api/v1/workspaces", {"name": ui.unique("bait")}, token=mallory_token)
    assert status == 201, team
    join_workspace_live(server, mallory_token, team["id"], victim, victim_token)
    bait = new_environment(server, mallory_token, team["id"], ui.unique("bait"), shared=True)
    own = new_environment(server, victim_token, personal_workspace(server, victim_token), ui.unique("mine"))
    wait_running(server, mallory_token, bait)
    wait_running(server, victim_token, own)
    port = int(server.url.rsplit(":", 1)[1])
    bait_origin, own_origin = app_origin(bait, port), app_origin(own, port)

    # Mallory, root in her container, takes over JupyterLab's socket with her own server.
    page_html = (ATTACKER / "evil.html").read_text().replace("__CONSOLE__", server.url).replace("__VICTIM_ENV__", own) \
        .replace("__OTHER_APP__", own_origin).replace("__ATTACKER__", mallory).replace("__ATTACKER_PASSWORD__", ui.password)
    container = docker.containers.list(filters={"label": f"remotegpu.env_id={bait}"})[0]
    for name, text in (("evil.html", page_html), ("evil_server.py", (ATTACKER / "evil_server.py").read_text())):
        code, out = container.exec_run(["/opt/jupyter/bin/python3", "-c", f"open('/root/{name}', 'w').write({text!r})"])
        assert code == 0, out
    ask = ("import socket; s = socket.socket(socket.AF_UNIX); s.connect('/run/remotegpu/jupyter.sock'); "
           "s.sendall(b'GET /evil.html HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n'); print(s.recv(65536))")
    deadline = time.monotonic() + 120
    while container.exec_run(["/opt/jupyter/bin/python3", "-c", ask])[0] != 0:  # JupyterLab (re)creates its socket as it starts
        assert time.monotonic() < deadline, "JupyterLab's socket did not appear"
        time.sleep(1)
    container.exec_run(["/opt/jupyter/bin/python3", "/root/evil_server.py"], detach=True)
    while b"owner serves" not in container.exec_run(["/opt/jupyter/bin/python3", "-c", ask])[1]:
        assert time.monotonic() < deadline, "the owner's server did not take JupyterLab's socket"
        time.sleep(1)

    # The victim: signed in to the console, and to their own environment's JupyterLab.
    page = make_page()
    ui.login(page, victim)
    console_session = next(c for c in page.context.cookies(server.url) if c["name"] == "rgpu_session")
    assert console_session["httpOnly"] and console_session["sameSite"] == "Lax" and console_session["domain"] == "127.0.0.1"
    assert page.evaluate("document.cookie") == ""  # nothing of the session is readable by scripts
    stored = page.evaluate("JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage)])")
    assert "eyJ" not in stored and "rgpu_rt_" not in stored and "token" not in stored.lower(), stored
    mine = page.context.new_page()
    mine.goto(f"{own_origin}/api/status")
    assert mine.url == f"{own_origin}/api/status", mine.url  # the handshake went through: the app cookie is set
    mine.close()

    # The link.
    evil = page.context.new_page()
    evil.goto(f"{bait_origin}/evil.html")
    assert evil.url == f"{bait_origin}/evil.html"  # after the handshake, on the bait's own host
    evil.wait_for_selector("body[data-done='1']", timeout=90_000)
    r = json.loads(evil.locator("#out").text_content())
    ui.shot(evil, "attacker-page")  # every attempt and how it ended, for the record

    # Reading the console's tokens: nothing on this origin, the console's frame is another origin.
    assert r["own_storage"] == "[[],[]]", r
    assert "rgpu" not in r["own_cookie"], r  # the app cookie is httpOnly; the console's is not this host's
    assert r["console_frame_storage"].startswith("error: SecurityError"), r
    # The API with the victim's cookies: unreadable (no CORS), and refused where sent blind.
    for name in ("me_cors", "session_cors", "mint_cors"):
        assert r[name].startswith("error: TypeError"), (name, r[name])
    assert r["mint_nocors"] == "sent opaque" and r["login_csrf"] == "sent opaque", r
    status, tokens = server.request("GET", "/api/v1/users/me/tokens", token=victim_token)
    assert status == 200 and tokens["items"] == [], tokens  # nothing was minted
    # A service worker over the console: refused (and the app host's own controls only itself).
    assert r["sw_console"].startswith("error:"), r
    # The console's live channels: refused.
    assert r["terminal"] == "refused" and r["events"] == "error", r
    # Another environment's app (the victim's, signed in): unreadable, and refused by the platform.
    assert r["other_app_read"].startswith("error: TypeError"), r
    assert r["other_app_ws"] == "refused", r

    # Cookies: none planted for the console's host or for other app hosts, none named like ours.
    jar = page.context.cookies()
    console_now = [c for c in jar if c["domain"] == "127.0.0.1" and c["name"] == "rgpu_session"]
    assert [c["value"] for c in console_now] == [console_session["value"]]
    assert not [c for c in jar if "planted-by-upstream" in c["value"]], jar  # the proxy dropped them all
    assert any(c["name"] == "owners_own" and c["domain"] == f"{bait}--jupyter.localhost" for c in jar)  # host-only: passed
    evil.close()

    # The console still works, as the victim (no login CSRF), with no service worker.
    page.goto("/environments")
    page.get_by_test_id("user-menu").wait_for()
    expect(page.get_by_test_id("user-menu")).to_contain_text(victim)
    assert page.evaluate("navigator.serviceWorker.getRegistrations().then(r => r.length)") == 0
    assert page.evaluate("navigator.serviceWorker.controller") is None
    status, me = server.request("GET", "/api/v1/users/me", token=victim_token)
    assert status == 200 and me["username"] == victim
    for env_id, token in ((bait, mallory_token), (own, victim_token)):
        server.request("DELETE", f"/api/v1/environments/{env_id}", token=token)


def test_opening_an_app_signs_in_through_the_console_and_comes_back(make_page, ui, server):
    """An app link opened without a console session goes to the login page and, after it,
    straight on to the app; with an expired access cookie the console renews it silently."""
    owner = ui.unique("opener")
    token = server.signup(owner, ui.password)
    env_id = new_environment(server, token, personal_workspace(server, token), ui.unique("app"))
    wait_running(server, token, env_id)
    app = app_origin(env_id, int(server.url.rsplit(":", 1)[1]))

    page = make_page()
    page.goto(f"{app}/api/status")
    page.wait_for_url("**/login?next=**")
    page.get_by_test_id("login-username").fill(owner)
    page.get_by_test_id("login-password").fill(ui.password)
    page.get_by_test_id("login-submit").click()
    page.wait_for_url(f"{app}/api/status")

    later = make_page()
    ui.login(later, owner)
    session = next(c for c in later.context.cookies() if c["name"] == "rgpu_session")
    later.context.add_cookies([{**session, "value": "expired.garbage.token"}])
    later.goto(f"{app}/api/status")
    later.wait_for_url(f"{app}/api/status")  # no login form on the way: the refresh cookie renewed the session
    server.request("DELETE", f"/api/v1/environments/{env_id}", token=token)
