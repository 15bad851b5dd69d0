"""The environment flow in the browser, on real Docker containers:
register → SSH key → create → Running without reload → terminal echo → stop → delete.

This module runs its own live server with the Docker runtime (fake GPUs, a private
``REMOTEGPU_DOCKER_SCOPE``) so the web terminal reaches a real shell. Without a Docker
daemon or the base image the module is skipped on a laptop and fails in CI (``CI=true``).
Every container and volume of the scope is removed when the module ends.
"""

from __future__ import annotations

import os
import re
import secrets
from typing import Iterator

import pytest
from playwright.sync_api import expect

from tests.support.components import docker_with_image, remove_scope
from tests.support.live_server import LiveServer, live_server

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

    # JupyterLab itself, through the platform's proxy on the session cookie: its page,
    # its scripts (several MiB, streamed) and its websockets; a Python kernel starts.
    page.get_by_role("tab", name="Overview").click()
    with page.context.expect_page() as opened:
        page.get_by_test_id("open-jupyter").click()
    lab = opened.value
    lab.wait_for_load_state()
    assert f"/proxy/environments/{env_id}/jupyter/" in lab.url
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
    for _ in range(60):
        answer = lab.request.get(written)
        if answer.ok and answer.text().strip() == "jt-42":
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
