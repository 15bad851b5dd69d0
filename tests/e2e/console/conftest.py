"""Browser end-to-end tests of the web console: the real server, the built console, Debian's Chromium.

The console is built once per session (``npm ci && npm run build``) when its ``dist`` is
missing or older than its sources. Screenshots land in ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.live_server import LiveServer, live_server

REPO = Path(__file__).resolve().parents[3]
CONSOLE = REPO / "src" / "remotegpu" / "entrypoints" / "console"
DIST = CONSOLE / "dist"
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
CHROMIUM = os.environ.get("REMOTEGPU_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
PASSWORD = "correct horse battery"
_names = itertools.count()


def _missing(reason: str) -> None:
    """A component the test needs is not here: fail loudly in CI, skip on a laptop."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(reason)
    pytest.skip(reason)


def _newest_source_mtime() -> float:
    paths = [CONSOLE / n for n in ("index.html", "package.json", "package-lock.json", "vite.config.ts", "tsconfig.json")]
    for folder in ("src", "public"):
        paths.extend(p for p in (CONSOLE / folder).rglob("*") if p.is_file())
    return max(p.stat().st_mtime for p in paths if p.exists())


def build_console() -> None:
    index = DIST / "index.html"
    if index.is_file() and index.stat().st_mtime >= _newest_source_mtime():
        return
    npm = shutil.which("npm")
    if npm is None:
        _missing("npm is not installed: cannot build the web console")
    marker = CONSOLE / "node_modules" / ".package-lock.json"
    if not marker.is_file() or marker.stat().st_mtime < (CONSOLE / "package-lock.json").stat().st_mtime:
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=CONSOLE, check=True)
    subprocess.run([npm, "run", "build"], cwd=CONSOLE, check=True)


@pytest.fixture(scope="session")
def console_built() -> None:
    build_console()


@pytest.fixture(scope="session")
def server(console_built, tmp_path_factory) -> Iterator[LiveServer]:
    env = {
        "REMOTEGPU_LOGIN_LIMIT_PER_IP": "10000",
        "REMOTEGPU_LOGIN_LIMIT_PER_ACCOUNT": "1000",
        # Fake GPUs on the in-memory runtime; test_console_environments.py starts its own server on Docker.
        "REMOTEGPU_AGENT_FAKE_GPUS": os.environ.get("REMOTEGPU_E2E_FAKE_GPUS", "2xNVIDIA A100-SXM4-80GB"),
    }
    with live_server(tmp_path_factory.mktemp("console-e2e"), **env) as srv:
        yield srv


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        _missing(f"Chromium not found at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the python 'playwright' package is not installed")
    pw = sync_playwright().start()
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    yield browser
    browser.close()
    pw.stop()


@pytest.fixture
def make_page(browser, server, request):
    """New isolated browser contexts (own localStorage) on the live server; failures get a screenshot."""
    contexts = []

    def make(locale: str = "en-US"):
        context = browser.new_context(base_url=server.url, locale=locale, viewport={"width": 1440, "height": 900})
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        return page

    errors: list[str] = []
    yield make
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    for i, context in enumerate(contexts):
        if failed:
            for j, p in enumerate(context.pages):
                shot(p, f"FAILED-{request.node.name}-{i}-{j}")
        context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.fixture
def page(make_page):
    return make_page()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


def shot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    try:
        # Finished transitions: Element Plus fades tags and menus in, and a screenshot
        # taken mid-fade shows them nearly invisible.
        page.screenshot(path=str(path), full_page=True, animations="disabled")
    except Exception:  # a closed page on teardown: nothing to save
        pass
    return path


def unique(prefix: str) -> str:
    return f"{prefix}{os.getpid() % 10000}x{next(_names)}"


def login_ui(page, username: str, password: str = PASSWORD) -> None:
    page.goto("/login")
    page.get_by_test_id("login-username").fill(username)
    page.get_by_test_id("login-password").fill(password)
    page.get_by_test_id("login-submit").click()
    page.wait_for_url("**/environments")
    page.get_by_test_id("user-menu").wait_for()


def ssh_public_key(comment: str = "e2e@test") -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    raw = Ed25519PrivateKey.generate().public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return f"{raw.decode()} {comment}"


def confirm_dialog(page) -> None:
    """Accept the ElMessageBox confirmation that is open."""
    page.locator(".el-message-box__btns .el-button--primary, .el-message-box__btns .el-button--danger").last.click()


class Ui:
    """Helpers handed to the tests as the ``ui`` fixture."""

    password = PASSWORD
    shot = staticmethod(shot)
    login = staticmethod(login_ui)
    ssh_public_key = staticmethod(ssh_public_key)
    confirm = staticmethod(confirm_dialog)
    unique = staticmethod(unique)

    def __init__(self, server: LiveServer):
        self.server = server

    def user(self, prefix: str = "user") -> str:
        """A fresh account registered through the API; returns its username."""
        name = unique(prefix)
        self.server.signup(name, PASSWORD)
        return name

    def admin_token(self) -> str:
        return self.server.login("admin", "admin-password-123")


@pytest.fixture
def ui(server) -> Ui:
    return Ui(server)
