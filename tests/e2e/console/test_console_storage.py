"""Datasets in the browser: create one, drop files to upload a version (checksums computed in
the page, parts through the platform, live progress), a second version with one changed
file, the diff, file list and download, a model with metadata, the Chinese page, and the
mount picker on the environment create form."""

from __future__ import annotations

import hashlib
import json
import urllib.request

from playwright.sync_api import expect


def _api(server, path: str, token: str):
    req = urllib.request.Request(server.url + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def test_dataset_upload_versions_diff_and_mount_picker(make_page, ui, tmp_path):
    user = ui.user("data")
    token = ui.server.login(user, ui.password)
    page = make_page()
    ui.login(page, user)
    page.get_by_test_id("nav-datasets").click()
    # The workspace shared disk: off, then on at 2 GiB (the owner may), as the API says too.
    expect(page.get_by_test_id("shared-disk-state")).to_have_text("Off")
    page.get_by_test_id("shared-disk-size").locator("input").fill("2")
    page.get_by_test_id("shared-disk-save").click()
    expect(page.get_by_test_id("shared-disk-state")).to_have_text("2 GiB")
    assert _api(ui.server, f"/api/v1/workspaces/{_personal(ui.server, token)}/shared-disk", token)["size_gib"] == 2
    page.get_by_test_id("data-new").click()
    page.get_by_test_id("data-form-name").fill("mnist-mini")
    page.get_by_test_id("data-form-description").fill("digits")
    page.get_by_test_id("data-form-submit").click()
    expect(page.get_by_test_id("data-detail")).to_contain_text("mnist-mini")

    big = bytes(range(256)) * (9 * 1024 * 1024 // 256 + 7)  # > 8 MiB: two parts
    (tmp_path / "train.bin").write_bytes(big)
    (tmp_path / "labels.csv").write_text("a,1\n")
    page.get_by_test_id("data-drop").locator("input[type=file]").set_input_files([str(tmp_path / "train.bin"), str(tmp_path / "labels.csv")])
    page.get_by_test_id("data-upload-message").fill("first")
    page.get_by_test_id("data-upload").click()
    expect(page.get_by_test_id("data-progress")).to_contain_text("Committed", timeout=60_000)
    expect(page.get_by_test_id("versions-table")).to_contain_text("v1")
    ui.shot(page, "dataset-version-1")

    # What the server holds is exactly what was dropped (sha256 computed in the page).
    repo = _api(ui.server, "/api/v1/datasets?workspace_id=" + _personal(ui.server, token), token)["items"][0]
    files = {f["path"]: f for f in _api(ui.server, f"/api/v1/datasets/{repo['id']}/versions/1", token)["files"]}
    assert files["train.bin"]["sha256"] == hashlib.sha256(big).hexdigest() and files["train.bin"]["size"] == len(big)

    v2 = tmp_path / "v2"  # other paths on this machine, same names in the version
    v2.mkdir()
    (v2 / "train.bin").write_bytes(big)
    (v2 / "labels.csv").write_text("a,1\nb,2\n")
    page.get_by_test_id("data-drop").locator("input[type=file]").set_input_files([str(v2 / "train.bin"), str(v2 / "labels.csv")])
    page.get_by_test_id("data-upload").click()
    expect(page.get_by_test_id("versions-table")).to_contain_text("v2", timeout=60_000)
    page.get_by_test_id("diff-run").click()
    result = page.get_by_test_id("diff-result")
    expect(result).to_contain_text("M labels.csv")
    expect(result).to_contain_text("1 unchanged")
    page.get_by_test_id("version-files-2").click()
    expect(page.get_by_test_id("version-files")).to_contain_text("train.bin")
    with page.expect_download() as download:
        page.get_by_test_id("version-files").get_by_role("link", name="Download").last.click()
    assert (tmp_path / "got").write_bytes(open(download.value.path(), "rb").read()) and (tmp_path / "got").read_bytes() in (big, b"a,1\nb,2\n")
    ui.shot(page, "dataset-diff")

    # The Chinese page.
    zh = make_page("zh-CN")
    ui.login(zh, user)
    zh.get_by_test_id("nav-datasets").click()
    expect(zh.get_by_test_id("datasets-page")).to_contain_text("数据集")
    expect(zh.get_by_test_id("data-table")).to_contain_text("mnist-mini")
    ui.shot(zh, "datasets-zh")

    # A model with its metadata.
    page.get_by_test_id("nav-models").click()
    page.get_by_test_id("data-new").click()
    page.get_by_test_id("data-form-name").fill("bert-ft")
    page.get_by_test_id("data-form-framework").fill("pytorch")
    page.get_by_test_id("data-form-submit").click()
    expect(page.get_by_test_id("model-info")).to_contain_text("pytorch")

    # The mount picker offers the dataset on the create form.
    page.get_by_test_id("nav-create").click()
    page.locator(".el-collapse-item__header").last.click()
    page.get_by_test_id("mount-add").click()
    page.get_by_test_id("mount-name-0").click()
    page.locator(".el-select-dropdown__item:visible", has_text="mnist-mini").click()
    expect(page.get_by_test_id("mount-picker")).to_contain_text("/datasets/mnist-mini")
    ui.shot(page, "create-form-mount-picker")


def _personal(server, token: str) -> str:
    return next(w["id"] for w in _api(server, "/api/v1/workspaces", token)["items"] if w["is_personal"])


def test_browser_uploads_parts_straight_to_s3_by_presigned_url(browser, console_built, tmp_path):
    """With the S3 backend (moto's server, the bucket's CORS rules written by the adapter),
    the page PUTs each part to its presigned URL (the platform sees no part) and reads the
    ETag; the platform verifies and commits. A version made that way downloads intact."""
    import urllib.request as _req

    from tests.support.live_server import live_server
    from tests.support.s3servers import s3_server

    with s3_server("moto") as s3, live_server(
            tmp_path / "server", REMOTEGPU_STORAGE_BACKEND="s3", REMOTEGPU_S3_ENDPOINT=s3.endpoint,
            REMOTEGPU_S3_BUCKET="console-direct", REMOTEGPU_S3_ACCESS_KEY=s3.access_key, REMOTEGPU_S3_SECRET_KEY=s3.secret_key,
            REMOTEGPU_S3_REGION=s3.region, REMOTEGPU_S3_ADDRESSING="path",
            REMOTEGPU_S3_CORS_ORIGINS="http://127.0.0.1:*") as server:
        server.signup("direct", "correct horse battery")
        token = server.login("direct", "correct horse battery")
        context = browser.new_context(base_url=server.url, viewport={"width": 1440, "height": 900})
        context.set_default_timeout(15_000)
        s3_puts: list[str] = []
        platform_puts: list[str] = []

        def seen(r) -> None:
            if r.method == "PUT" and r.url.startswith(s3.endpoint):
                s3_puts.append(r.url)
            elif r.method == "PUT" and "/parts/" in r.url:
                platform_puts.append(r.url)

        try:
            page = context.new_page()
            page.on("request", seen)
            from tests.e2e.console.conftest import login_ui

            login_ui(page, "direct", "correct horse battery")
            page.get_by_test_id("nav-datasets").click()
            page.get_by_test_id("data-new").click()
            page.get_by_test_id("data-form-name").fill("direct")
            page.get_by_test_id("data-form-submit").click()
            expect(page.get_by_test_id("data-detail")).to_contain_text("direct")
            big = hashlib.sha256(b"direct").digest() * (9 * 1024 * 1024 // 32 + 3)  # two parts of 8 MiB
            (tmp_path / "weights.bin").write_bytes(big)
            page.get_by_test_id("data-drop").locator("input[type=file]").set_input_files([str(tmp_path / "weights.bin")])
            page.get_by_test_id("data-upload").click()
            expect(page.get_by_test_id("data-progress")).to_contain_text("Committed", timeout=60_000)
            expect(page.get_by_test_id("data-upload-route")).to_have_text("straight to object storage")
        finally:
            context.close()
        assert len(s3_puts) == 2 and platform_puts == []  # both parts went to S3 itself, none through the platform
        repo = _api(server, "/api/v1/datasets?workspace_id=" + _personal(server, token), token)["items"][0]
        where = _api(server, f"/api/v1/datasets/{repo['id']}/versions/1/file-url?path=weights.bin", token)
        assert where["presigned"]
        with _req.urlopen(where["url"], timeout=30) as resp:
            assert hashlib.sha256(resp.read()).hexdigest() == hashlib.sha256(big).hexdigest()
