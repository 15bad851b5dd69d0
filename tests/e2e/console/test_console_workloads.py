"""Training jobs and inference services in the browser, on Docker: submit a job from the
form, watch its log arrive live and the job succeed, download link; the Chinese page;
create a service and see its replica become ready."""

from __future__ import annotations

import os
import secrets
from typing import Iterator

import pytest
from playwright.sync_api import expect

from tests.support.components import docker_with_image, remove_scope
from tests.support.live_server import LiveServer, live_server

IMAGE = os.environ.get("REMOTEGPU_BASE_IMAGE", "remotegpu/base:latest")


@pytest.fixture(scope="module")
def server(console_built, tmp_path_factory) -> Iterator[LiveServer]:
    docker = docker_with_image(IMAGE)
    scope = f"uiw{os.getpid()}{secrets.token_hex(3)}"
    try:
        with live_server(
            tmp_path_factory.mktemp("console-workloads"), REMOTEGPU_RUNTIME="docker", REMOTEGPU_DOCKER_SCOPE=scope,
            REMOTEGPU_AGENT_FAKE_GPUS="2xNVIDIA A100-SXM4-80GB", REMOTEGPU_AGENT_NAME=f"host-{scope}", REMOTEGPU_BASE_IMAGE=IMAGE,
            REMOTEGPU_LOGIN_LIMIT_PER_IP="10000", REMOTEGPU_LOGIN_LIMIT_PER_ACCOUNT="1000",
        ) as srv:
            yield srv
    finally:
        for c in docker.containers.list(all=True, filters={"label": f"remotegpu.job_scope={scope}"}):
            c.remove(force=True)
        for n in docker.networks.list(filters={"label": f"remotegpu.job_scope={scope}"}):
            n.remove()
        remove_scope(docker, scope)


def test_submit_a_job_and_follow_its_live_log(make_page, ui):
    page = make_page()
    name = ui.user("jobs")
    token = ui.server.login(name, ui.password)
    _, spaces = ui.server.request("GET", "/api/v1/workspaces", token=token)
    ws = next(w["id"] for w in spaces["items"] if w["is_personal"])
    code, model = ui.server.request("POST", "/api/v1/models", {"workspace_id": ws, "name": "weights"}, token=token)
    assert code == 201, model
    ui.login(page, name)
    page.get_by_test_id("nav-jobs").click()
    page.get_by_test_id("jobs-new").click()
    page.get_by_test_id("job-form-name").fill("steps")
    expect(page.get_by_test_id("mount-picker")).to_be_visible()  # datasets/models to mount (none here)
    page.get_by_test_id("job-form-command").fill(
        'sh -c "mkdir -p /output && echo w > /output/w.txt; for i in 1 2 3; do echo step $i; sleep 1; done"')
    page.get_by_test_id("job-form-output-model").fill("weights")  # node 0's /output becomes its next version
    page.get_by_test_id("job-form-cpu").locator("input").fill("1")
    page.get_by_test_id("job-form-cpu").locator("input").press("Tab")
    page.get_by_test_id("job-form-memory").locator("input").fill("1")
    page.get_by_test_id("job-form-memory").locator("input").press("Tab")
    page.get_by_test_id("job-form-submit").click()
    page.wait_for_url("**/jobs/*")
    log = page.get_by_test_id("job-log")
    expect(log).to_contain_text("step 1", timeout=90_000)
    expect(log).to_contain_text("step 3", timeout=30_000)
    expect(page.get_by_test_id("job-detail-status")).to_have_attribute("data-status", "succeeded", timeout=30_000)
    expect(page.get_by_test_id("job-exit-code")).to_have_text("0")
    expect(page.get_by_test_id("job-log-download").first).to_be_visible(timeout=15_000)
    expect(page.get_by_test_id("job-output")).to_have_attribute("data-state", "done", timeout=60_000)
    expect(page.get_by_test_id("job-output-link")).to_have_text("weights version 1")
    expect(page.get_by_test_id("job-output-state")).to_have_text("stored")
    ui.shot(page, "job-detail-en")
    page.get_by_test_id("lang-switch").click()
    page.get_by_test_id("lang-zh-CN").click()
    expect(page.get_by_test_id("job-detail-status")).to_have_text("已成功")
    expect(page.get_by_test_id("job-output-link")).to_have_text("weights 版本 1")
    expect(page.get_by_test_id("job-output-state")).to_have_text("已保存")
    page.get_by_test_id("job-output-link").click()
    page.wait_for_url(f"**/models/{model['id']}")
    page.get_by_test_id("nav-jobs").click()
    expect(page.get_by_test_id("job-status").first).to_have_text("已成功")
    ui.shot(page, "jobs-zh")


def test_create_a_service_and_see_a_ready_replica(make_page, ui):
    page = make_page()
    ui.login(page, ui.user("svc"))
    page.get_by_test_id("nav-services").click()
    page.get_by_test_id("svc-new").click()
    page.get_by_test_id("svc-form-name").fill("web")
    page.get_by_test_id("svc-form-command").fill("python3 -m http.server 8000")
    page.get_by_test_id("svc-form-min").locator("input").fill("1")
    page.get_by_test_id("svc-form-min").locator("input").press("Tab")
    page.get_by_test_id("svc-form-submit").click()
    expect(page.get_by_test_id("svc-url").first).to_contain_text("--serve.localhost")
    expect(page.get_by_test_id("svc-replicas").first).to_contain_text("1 ready", timeout=90_000)
    expect(page.get_by_test_id("svc-detail")).to_be_visible()
    ui.shot(page, "services-en")
    page.get_by_test_id("svc-delete").click()
    ui.confirm(page)
    expect(page.get_by_test_id("svc-detail")).to_be_hidden()
