"""The built pages in a real headless browser (Debian's chromium through Playwright), served from localhost.

Each page must load without JavaScript errors and show every image (naturalWidth > 0). Requests that
leave localhost are blocked, as on a machine without network; the only console errors allowed are
the failed loads of those blocked requests (the CDN copy of MathJax on pages with formulas), which
the published book fetches normally.

One JavaScript error is known and harmless: sphinx-thebe 0.3 (pulled in by jupyter-book 1.x) writes
its inline configuration script twice, so the second `const THEBE_JS_URL = ...` throws "already
declared". The first copy has already defined the same constants, and thebe (live code) is off in
this book. The test accepts that one error only where the page holds two identical copies.
"""

from __future__ import annotations

import functools
import re
import http.server
import shutil
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest

from book_helpers import ROOT, figure_count, toc_files

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
THEBE_DUPLICATE = "Identifier 'THEBE_JS_URL' has already been declared"
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
OPTIONAL_HOSTS = {"cdn.jsdelivr.net"}  # MathJax on pages with formulas: the text reads without it


@pytest.fixture(scope="module")
def server(built_book):
    """Serve _build/html on a free localhost port for the module's tests."""
    handler = functools.partial(_QuietHandler, directory=str(built_book.html))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium)")
    playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    with playwright_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, headless=True,
            args=LAUNCH_ARGS)
        yield context
        context.close()


def visit(browser, url: str) -> dict:
    """Open `url` with outside requests blocked; what went wrong, and every image's natural width."""
    page = browser.new_page()
    blocked, failed, console_errors, page_errors = [], [], [], []

    def route(request_route):
        if urlparse(request_route.request.url).hostname in LOCAL_HOSTS:
            request_route.continue_()
        else:
            blocked.append(request_route.request.url)
            request_route.abort()

    page.route("**/*", route)
    page.on("console", lambda message: console_errors.append(message) if message.type == "error" else None)
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    page.on("requestfailed", lambda request: failed.append(request.url))
    response = page.goto(url, wait_until="load")
    images = page.evaluate("Array.from(document.querySelectorAll('main img'))"
                           ".map(img => [img.getAttribute('src'), img.complete, img.naturalWidth])")
    all_images = page.evaluate("Array.from(document.images).map(img => [img.src, img.naturalWidth])")
    title = page.evaluate("document.querySelector('main h1') ? document.querySelector('main h1').innerText : ''")
    page.close()
    return {"status": response.status if response else None, "blocked": blocked, "failed": failed,
            "console_errors": console_errors, "page_errors": page_errors, "images": images,
            "all_images": all_images, "title": title}


def thebe_config_written_twice(page: Path) -> bool:
    """Whether the page holds two identical inline `const THEBE_JS_URL = ...` scripts (see the docstring)."""
    scripts = re.findall(r"<script>(const THEBE_JS_URL = [^<]*)</script>", page.read_text(encoding="utf-8"))
    return len(scripts) == 2 and scripts[0] == scripts[1]


@pytest.mark.parametrize("name", toc_files())
def test_page_loads_and_shows_its_figures(browser, server, built_book, name):
    seen = visit(browser, f"{server}/{name}.html")
    assert seen["status"] == 200
    assert seen["title"], f"{name}: no <h1> in the page's main content"
    errors = [error for error in seen["page_errors"]
              if not (error == THEBE_DUPLICATE and thebe_config_written_twice(built_book.html / f"{name}.html"))]
    assert not errors, f"{name}: JavaScript errors: {errors}"
    local_failures = [url for url in seen["failed"] if urlparse(url).hostname in LOCAL_HOSTS]
    assert not local_failures, f"{name}: local resources failed to load: {local_failures}"
    unexplained = [message.text for message in seen["console_errors"]
                   if message.location.get("url") not in seen["blocked"]]
    assert not unexplained, f"{name}: console errors not caused by blocked outside requests: {unexplained}"
    source = ROOT / f"{name}.ipynb"
    expected = figure_count(source) if source.is_file() else 0
    assert len(seen["images"]) == expected, f"{name}: {len(seen['images'])} images shown, {expected} expected"
    broken = [src for src, width in seen["all_images"] if width == 0]
    assert not broken, f"{name}: images that did not render: {broken}"
    outside = {urlparse(url).hostname for url in seen["blocked"]}
    assert outside <= OPTIONAL_HOSTS, f"{name}: the page needs outside hosts: {sorted(outside - OPTIONAL_HOSTS)}"

