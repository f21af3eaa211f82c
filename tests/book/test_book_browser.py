"""The built pages in a real headless browser (Debian's chromium through Playwright), served from localhost.

Each page must load without JavaScript errors and show every image (naturalWidth > 0). Requests that
leave localhost are blocked, as on a machine without network, and no page may need one: MathJax is
bundled with the book (sphinx-mathjax-offline), so every formula must be typeset, with no raw TeX
left in the text. The window is 1280 x 800 px, a laptop's, where no code block may scroll sideways
(the book's CSS wraps long lines) and no figure may reach past the text column.

One JavaScript error is known and harmless: sphinx-thebe 0.3 (pulled in by jupyter-book 1.x) writes
its inline configuration script twice, so the second `const THEBE_JS_URL = ...` throws "already
declared". The first copy has already defined the same constants, and thebe (live code) is off in
this book. The test accepts that one error only where the page holds two identical copies.
"""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest

from book_helpers import ROOT, figure_count, toc_files

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
THEBE_DUPLICATE = "Identifier 'THEBE_JS_URL' has already been declared"
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
VIEWPORT = {"width": 1280, "height": 800}

# Run in the page once it has loaded: waits for MathJax's first typesetting pass (where MathJax
# loaded), then reports what a reader would see wrong.
#   raw_tex: text outside code and typeset math that still holds TeX (\( \) \[ \] $$ or a \command),
#            as MathJax leaves it when it did not load or did not process that element;
#   tex_errors: formulas MathJax could not parse (it shows them as red error boxes);
#   cut_blocks: <pre> blocks wider than their box (a scroll bar, lines cut at the window's edge);
#   wide_images: figures whose right edge passes the text column's.
READER_CHECKS = r"""async () => {
  const mathjax = window.MathJax;
  if (mathjax && mathjax.startup && mathjax.startup.promise) await mathjax.startup.promise;
  const main = document.querySelector('main');
  const tex = /\\[\[\]()]|\$\$|\\[A-Za-z]+/;
  const rawTex = [];
  const walker = document.createTreeWalker(main, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (node.parentElement.closest('pre, code, script, style, mjx-container')) continue;
    if (tex.test(node.textContent)) rawTex.push(node.textContent.trim().slice(0, 100));
  }
  const longestLine = text => text.split('\n').reduce((a, b) => (b.length > a.length ? b : a), '');
  const cutBlocks = Array.from(main.querySelectorAll('pre'))
    .filter(block => block.scrollWidth > block.clientWidth)
    .map(block => `${block.scrollWidth} > ${block.clientWidth} px: ${longestLine(block.textContent).slice(0, 100)}`);
  const column = (main.querySelector('article') || main).getBoundingClientRect().right;
  const wideImages = Array.from(main.querySelectorAll('img'))
    .filter(img => img.getBoundingClientRect().right > column + 1)
    .map(img => `${img.getAttribute('src').slice(0, 60)} ends at ${img.getBoundingClientRect().right} px, `
                + `column at ${column}`);
  return {raw_tex: rawTex, tex_errors: main.querySelectorAll('mjx-merror').length,
          cut_blocks: cutBlocks, wide_images: wideImages};
}"""


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
    playwright_api = pytest.importorskip("playwright.sync_api",
                                         reason="playwright is not installed (pip install playwright)")
    with playwright_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, headless=True,
            args=LAUNCH_ARGS, viewport=VIEWPORT)
        yield context
        context.close()


@pytest.fixture(scope="module")
def seen(browser, server):
    """`seen(name)`: what `visit` found on the page `name`, each page visited once per module."""
    pages: dict[str, dict] = {}

    def seen_page(name: str) -> dict:
        if name not in pages:
            pages[name] = visit(browser, f"{server}/{name}.html")
        return pages[name]

    return seen_page


def visit(browser, url: str) -> dict:
    """Open `url` with outside requests blocked; what went wrong, every image's natural width, READER_CHECKS."""
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
    reader = page.evaluate(READER_CHECKS)
    page.close()
    return {"status": response.status if response else None, "blocked": blocked, "failed": failed,
            "console_errors": console_errors, "page_errors": page_errors, "images": images,
            "all_images": all_images, "title": title, **reader}


def thebe_config_written_twice(page: Path) -> bool:
    """Whether the page holds two identical inline `const THEBE_JS_URL = ...` scripts (see the docstring)."""
    scripts = re.findall(r"<script>(const THEBE_JS_URL = [^<]*)</script>", page.read_text(encoding="utf-8"))
    return len(scripts) == 2 and scripts[0] == scripts[1]


@pytest.mark.parametrize("name", toc_files())
def test_page_loads_and_shows_its_figures(seen, built_book, name):
    page = seen(name)
    assert page["status"] == 200
    assert page["title"], f"{name}: no <h1> in the page's main content"
    errors = [error for error in page["page_errors"]
              if not (error == THEBE_DUPLICATE and thebe_config_written_twice(built_book.html / f"{name}.html"))]
    assert not errors, f"{name}: JavaScript errors: {errors}"
    local_failures = [url for url in page["failed"] if urlparse(url).hostname in LOCAL_HOSTS]
    assert not local_failures, f"{name}: local resources failed to load: {local_failures}"
    outside = sorted({urlparse(url).hostname for url in page["blocked"]})
    assert not outside, f"{name}: the page needs outside hosts, unreachable offline: {outside}"
    console_errors = [message.text for message in page["console_errors"]]
    assert not console_errors, f"{name}: console errors: {console_errors}"
    source = ROOT / f"{name}.ipynb"
    expected = figure_count(source) if source.is_file() else 0
    assert len(page["images"]) == expected, f"{name}: {len(page['images'])} images shown, {expected} expected"
    broken = [src for src, width in page["all_images"] if width == 0]
    assert not broken, f"{name}: images that did not render: {broken}"


@pytest.mark.parametrize("name", toc_files())
def test_formulas_are_typeset_offline(seen, name):
    page = seen(name)
    assert not page["raw_tex"], f"{name}: {len(page['raw_tex'])} pieces of raw TeX on the page: {page['raw_tex'][:5]}"
    assert page["tex_errors"] == 0, f"{name}: MathJax could not typeset {page['tex_errors']} formulas"


@pytest.mark.parametrize("name", toc_files())
def test_no_code_line_is_cut_at_1280_px(seen, name):
    page = seen(name)
    assert not page["cut_blocks"], (f"{name}: {len(page['cut_blocks'])} code blocks scroll sideways in a "
                                    f"{VIEWPORT['width']} px window:\n" + "\n".join(page["cut_blocks"][:10]))
    assert not page["wide_images"], f"{name}: figures wider than the text column: {page['wide_images']}"

