"""The console's first load stays small: the JS a browser fetches for the login page and the
environments list, read from the build output (dist/index.html and Vite's manifest), is at
most 400 kB gzip (issue 12 item 7). The terminal (xterm.js) is not part of it.

A route's first load is the entry chunk with everything it imports statically, plus each
lazily imported route component on the way to that page with its own static imports.
Chunks shared between the two pages are counted once.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from tests.e2e.console.conftest import DIST

LIMIT_KB = 400.0
# The route components a page needs (router.ts): the login page is a top-level route;
# the environments list renders inside the app layout.
PAGES = {
    "login": ["src/views/LoginView.vue"],
    "environments": ["src/layouts/AppLayout.vue", "src/views/EnvironmentsView.vue"],
}


def gzip_kb(path: Path) -> float:
    # Level 6: what Vite's build report and common servers use.
    return len(gzip.compress(path.read_bytes(), compresslevel=6)) / 1000


def static_closure(manifest: dict, keys: list[str]) -> set[str]:
    """The chunk files of `keys` and of everything they import statically (not dynamic imports)."""
    seen: set[str] = set()
    files: set[str] = set()
    todo = list(keys)
    while todo:
        key = todo.pop()
        if key in seen:
            continue
        seen.add(key)
        chunk = manifest[key]
        files.add(chunk["file"])
        todo.extend(chunk.get("imports", []))
    return files


@pytest.fixture(scope="module")
def build(console_built) -> tuple[dict, str]:
    manifest_path = DIST / ".vite" / "manifest.json"
    assert manifest_path.is_file(), "vite.config.ts must set build.manifest (dist/.vite/manifest.json)"
    return json.loads(manifest_path.read_text()), (DIST / "index.html").read_text()


def first_load(build: tuple[dict, str], page: str) -> set[str]:
    manifest, index = build
    # The console's entry (index.html); the desktop viewer (desktop.html) is an entry of its
    # own that the login and environments pages never load.
    entries = ["index.html"]
    assert manifest.get("index.html", {}).get("isEntry"), [k for k, c in manifest.items() if c.get("isEntry")]
    # What index.html itself makes the browser fetch (entry script and modulepreloads) ...
    html_js = {m.lstrip("/") for m in re.findall(r'(?:src|href)="(/assets/[^"]+\.js)"', index)}
    assert manifest[entries[0]]["file"] in html_js
    # ... plus the entry's static imports and the page's lazily loaded route components.
    for key in PAGES[page]:
        assert key in manifest, f"{key} is not a chunk of its own: is its route still lazy?"
    files = html_js | static_closure(manifest, entries + PAGES[page])
    desktop = manifest.get("desktop.html")
    if desktop:  # guacamole-common-js stays out of the console's first load
        assert desktop["file"] not in files, f"the desktop viewer's entry is in the {page} page's first load"
    return files


def test_first_load_js_of_login_and_environments_is_at_most_400_kb_gzip(build):
    files = set()
    for page in PAGES:
        page_files = first_load(build, page)
        print(f"\n{page}: {sum(gzip_kb(DIST / f) for f in page_files):.1f} kB gzip JS in {len(page_files)} files")
        files |= page_files
    sizes = sorted(((gzip_kb(DIST / f), f) for f in files), reverse=True)
    total = sum(s for s, _ in sizes)
    print(f"login + environments: {total:.1f} kB gzip JS in {len(files)} files")
    for size, name in sizes:
        print(f"  {size:7.1f} kB  {name}")
    assert total <= LIMIT_KB, f"first load is {total:.1f} kB gzip of JS, over {LIMIT_KB} kB"


def test_the_terminal_is_loaded_only_with_the_terminal_panel(build):
    # xterm.js is ~80 kB gzip and only the environment page's terminal tab needs it.
    manifest, _ = build
    files = first_load(build, "login") | first_load(build, "environments")
    for name in files:
        assert "xterm-helper-textarea" not in (DIST / name).read_text(), f"xterm.js is in first-load {name}"
    terminal = [k for k in manifest if k.endswith("components/TerminalPanel.vue")]
    assert terminal and manifest[terminal[0]].get("isDynamicEntry"), "TerminalPanel should be imported lazily"
