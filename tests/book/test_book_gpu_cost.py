"""book/index.md gives the full GPU run's cost per chapter as book/gpu_cost.py estimates it today."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from book_helpers import ROOT, toc_files

pytestmark = pytest.mark.slow  # counts the FLOPs of three DeiT-S models (about a minute on 2 cores)


def _gpu_cost(monkeypatch):
    spec = importlib.util.spec_from_file_location("gpu_cost", ROOT / "book" / "gpu_cost.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_cost", module)  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_landing_page_quotes_todays_estimate_for_every_chapter(monkeypatch):
    gpu_cost = _gpu_cost(monkeypatch)
    rows = gpu_cost.cost_table("H100")
    assert [chapter for chapter, *_ in rows] == [name.split("/")[-1] for name in toc_files()[1:]]
    table = gpu_cost.markdown(rows, "H100")
    assert table in (ROOT / "book" / "index.md").read_text(), \
        f"book/index.md does not quote today's estimate (python book/gpu_cost.py):\n{table}"
    by_chapter = {chapter: (runs, minutes, needs) for chapter, runs, minutes, needs in rows}
    assert by_chapter["07_imagenet"][2] == "ImageNet" and by_chapter["00_wsol"][0] == 3
    assert by_chapter["02_attention_querying"][:2] == (0, 0)  # chapter 0's run, from the cache
