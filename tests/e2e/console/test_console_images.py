"""Images in the browser: the catalog with filters and details, the create form picking
from it, "Save as image" on the environment page with its live job (cancelled here: the
in-memory runtime saves nothing), a build refused for a base outside the catalog, and the
Chinese page. Its own server: a registry configured (the real one, started here)."""

from __future__ import annotations

import time
from typing import Iterator

import pytest
from playwright.sync_api import expect

from tests.e2e.console.conftest import PASSWORD, login_ui, shot, unique
from tests.support.live_server import LiveServer, live_server
from tests.support.registry import running_registry


@pytest.fixture(scope="module")
def img_server(console_built, tmp_path_factory) -> Iterator[LiveServer]:
    with running_registry() as registry, live_server(
        tmp_path_factory.mktemp("console-images"), REMOTEGPU_REGISTRY_URL=registry.address,
        REMOTEGPU_REGISTRY_USERNAME=registry.username, REMOTEGPU_REGISTRY_PASSWORD=registry.password,
        REMOTEGPU_HEARTBEAT_SECONDS="1",
    ) as srv:
        yield srv


@pytest.fixture
def img_page(browser, img_server):
    contexts = []

    def make(locale: str = "en-US"):
        context = browser.new_context(base_url=img_server.url, locale=locale, viewport={"width": 1440, "height": 900})
        context.set_default_timeout(20_000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


def test_catalog_save_as_image_and_build(img_page, img_server):
    admin = img_server.login("admin", "admin-password-123")
    code, body = img_server.request("POST", "/api/v1/images", {
        "name": "cuda", "tag": "12.4", "reference": "reg.test/cuda:12.4", "description": "CUDA toolkit",
        "metadata": {"os": "Ubuntu 22.04", "cuda": "12.4", "pytorch": "2.5"}}, token=admin)
    assert code == 201, body
    name = unique("imgs")
    token = img_server.signup(name, PASSWORD)
    code, ws = img_server.request("GET", "/api/v1/workspaces", token=token)
    code, env = img_server.request("POST", "/api/v1/environments", {
        "name": "saver", "workspace_id": ws["items"][0]["id"], "cpu_cores": 1, "memory_gib": 1}, token=token)
    assert code == 202, env
    deadline = time.monotonic() + 30
    while img_server.request("GET", f"/api/v1/environments/{env['id']}", token=token)[1]["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.3)

    page = img_page()
    login_ui(page, name)
    page.get_by_test_id("nav-images").click()
    table = page.get_by_test_id("img-table")
    expect(table).to_contain_text("base")
    expect(table).to_contain_text("cuda")
    expect(table).to_contain_text("pytorch 2.5")
    page.get_by_test_id("img-search").fill("pytorch")
    expect(page.get_by_test_id("img-name")).to_have_count(1)
    expect(page.get_by_test_id("img-name")).to_have_text("cuda:12.4")
    page.get_by_test_id("img-detail").click()
    expect(page.get_by_test_id("img-reference")).to_have_text("reg.test/cuda:12.4")
    shot(page, "images-catalog-detail")
    page.keyboard.press("Escape")

    # The create form offers the catalog.
    page.get_by_test_id("nav-create").click()
    page.get_by_test_id("create-image").click()
    expect(page.get_by_test_id("create-image-option").filter(has_text="cuda:12.4")).to_be_visible()
    page.keyboard.press("Escape")

    # Save as image: the job's live view; nothing saves it here (in-memory runtime), so cancel it.
    page.goto(f"/environments/{env['id']}")
    page.get_by_test_id("env-save-image").click()
    page.get_by_test_id("save-image-name").fill("my-tools")
    page.get_by_test_id("save-image-submit").click()
    expect(page.get_by_test_id("image-job-status")).to_have_text("Queued")
    expect(page.get_by_test_id("image-job-log")).to_contain_text("Waiting for a host")
    shot(page, "images-save-queued")
    page.get_by_test_id("image-job-cancel").click()
    expect(page.get_by_test_id("image-job-status")).to_have_text("Cancelled")

    page.goto("/images")
    # The catalog loads after the page does: filter only once it is there (a search typed
    # into the empty page was overwritten by the first load on a busy machine).
    expect(page.get_by_test_id("img-table")).to_contain_text("my-tools")
    page.get_by_test_id("img-search").fill("my-tools")
    expect(page.get_by_test_id("img-name")).to_have_count(1)
    expect(page.get_by_test_id("img-name")).to_have_text("my-tools:latest")
    expect(page.get_by_test_id("img-status-tag")).to_have_text("Failed")  # the cancelled save

    # A build must start FROM a catalog image.
    page.get_by_test_id("img-build").click()
    page.get_by_test_id("build-name").fill("hub")
    page.get_by_test_id("build-dockerfile").fill("FROM debian:12\nRUN true\n")
    page.get_by_test_id("build-submit").click()
    expect(page.locator(".el-message")).to_contain_text("catalog image")
    shot(page, "images-build-refused")

    zh = img_page("zh-CN")
    login_ui(zh, name)
    zh.get_by_test_id("nav-images").click()
    expect(zh.locator("h1")).to_have_text("镜像")
    expect(zh.get_by_test_id("img-table")).to_contain_text("平台")
    shot(zh, "images-zh-CN")
