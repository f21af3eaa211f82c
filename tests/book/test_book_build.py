"""The book builds offline with no warnings, every toc page carries its notebook's figures, and its scripts
and stylesheets (MathJax included) come with the build."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urlparse

import pytest

from book_helpers import ROOT, figure_count, toc_files

pytestmark = pytest.mark.slow  # one Sphinx build (about half a minute), shared with the browser test

# Sphinx lines that are not problems: none so far. Add a pattern here only with a reason.
HARMLESS_WARNINGS: tuple[str, ...] = ()


class MainImages(HTMLParser):
    """Counts the <img> tags inside the page's <main> element."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0
        self.images: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "main":
            self.depth += 1
        elif tag == "img" and self.depth:
            self.images.append(dict(attrs).get("src", ""))

    def handle_endtag(self, tag):
        if tag == "main":
            self.depth -= 1


def main_images(html: str) -> list[str]:
    parser = MainImages()
    parser.feed(html)
    return parser.images


class PageAssets(HTMLParser):
    """Collects the <script src> and <link rel="stylesheet" href> of a page, as written."""

    def __init__(self) -> None:
        super().__init__()
        self.assets: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script" and attrs.get("src"):
            self.assets.append(attrs["src"])
        elif tag == "link" and attrs.get("rel") == "stylesheet" and attrs.get("href"):
            self.assets.append(attrs["href"])


def page_assets(html: str) -> list[str]:
    parser = PageAssets()
    parser.feed(html)
    return parser.assets


def test_build_has_no_warnings(built_book):
    warnings = [line for line in built_book.log.splitlines()
                if re.search(r"\b(WARNING|ERROR)\b", line) and not any(p in line for p in HARMLESS_WARNINGS)]
    assert not warnings, "jupyter-book build warned:\n" + "\n".join(warnings[:20])


@pytest.mark.parametrize("name", toc_files())
def test_every_toc_page_is_built_with_its_figures(built_book, name):
    page = built_book.html / f"{name}.html"
    assert page.is_file(), f"{name}: no HTML page at {page.relative_to(built_book.html)}"
    html = page.read_text(encoding="utf-8")
    images = main_images(html)
    source = ROOT / f"{name}.ipynb"
    expected = figure_count(source) if source.is_file() else 0
    assert len(images) == expected, f"{name}: {len(images)} <img> in the page, {expected} figures in the notebook"
    for src in images:
        if not src.startswith("data:"):
            assert (page.parent / src).is_file(), f"{name}: image {src} is not in the build"


@pytest.mark.parametrize("name", toc_files())
def test_every_script_and_stylesheet_comes_with_the_build(built_book, name):
    page = built_book.html / f"{name}.html"
    assets = page_assets(page.read_text(encoding="utf-8"))
    outside = [url for url in assets if urlparse(url).scheme or url.startswith("//")]
    assert not outside, f"{name}: scripts or stylesheets from outside the build, missing offline: {outside}"
    missing = [url for url in assets if not (page.parent / urlparse(url).path).is_file()]
    assert not missing, f"{name}: scripts or stylesheets not in the build: {missing}"


def test_mathjax_and_the_book_css_are_bundled(built_book):
    static = built_book.html / "_static"
    assert (static / "mathjax" / "tex-chtml.js").is_file(), "MathJax is not in the build (sphinx-mathjax-offline)"
    assert (static / "satlib-book.css").is_file(), "book/_static/satlib-book.css is not in the build"
