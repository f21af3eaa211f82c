"""Helpers of the book tests: the toc, figure counts, and one offline build of the book."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def toc_files() -> list[str]:
    """The toc's root and chapters (those of every part, the appendix's included), as paths without suffix
    ("book/index", "book/00_wsol", ...)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    chapters = toc.get("chapters") or [entry for part in toc.get("parts", []) for entry in part["chapters"]]
    return [toc["root"], *(entry["file"] for entry in chapters)]


def chapter_notebooks() -> list[Path]:
    """Every chapter notebook of the toc, in order."""
    return [ROOT / f"{name}.ipynb" for name in toc_files()[1:]]


def removed_outputs(cell) -> bool:
    """Whether the book hides this cell's outputs (jupyter-book tags)."""
    tags = set(cell.get("metadata", {}).get("tags", []))
    return bool(tags & {"remove-output", "remove-cell"})


def figure_count(path: Path) -> int:
    """PNG figures a notebook shows in the book (outputs of cells whose outputs are not removed)."""
    nb = nbformat.read(path, as_version=4)
    return sum("image/png" in output.get("data", {})
               for cell in nb.cells if cell.cell_type == "code" and not removed_outputs(cell)
               for output in cell.get("outputs", []))


@dataclass
class BuiltBook:
    html: Path  # the _build/html folder
    log: str  # stdout + stderr of the build


def jupyter_book_command() -> list[str]:
    beside = Path(sys.executable).parent / "jupyter-book"
    found = str(beside) if beside.is_file() else shutil.which("jupyter-book")
    if found is None:
        pytest.skip("jupyter-book is not installed (pip install -e '.[dev]')")
    return [found]


def build_book(out: Path) -> BuiltBook:
    """`jupyter-book build .` into `out` (the repository stays clean); runs no notebook."""
    result = subprocess.run([*jupyter_book_command(), "build", str(ROOT), "--path-output", str(out),
                             "--keep-going"], capture_output=True, text=True, timeout=600, cwd=ROOT)
    log = result.stdout + result.stderr
    assert result.returncode == 0, f"jupyter-book build failed ({result.returncode}):\n{log[-4000:]}"
    html = out / "_build" / "html"
    assert html.is_dir(), f"no HTML output in {html}:\n{log[-2000:]}"
    return BuiltBook(html, log)
