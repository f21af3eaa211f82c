"""Execute the book's chapters in place, so the committed notebooks carry their outputs (`make notebooks`).

    python book/run_notebooks.py                 every chapter listed in _toc.yml
    python book/run_notebooks.py book/05_*.ipynb only these
    python book/run_notebooks.py --out DIR       write the executed chapters into DIR, sources untouched

Each notebook runs top to bottom in a fresh kernel with its own folder as the working directory (as
nbval runs it). The chapters cache their synthetic data and tiny trained model under $SATLIB_CACHE;
unless `--keep-cache` is given, the run uses a fresh temporary cache, so the committed outputs show a
training from scratch (in the first chapter that needs it) rather than a cache hit. The kernels inherit
this process's environment, so the book's SATLIB_* switches (satlib.book) apply to every chapter;
with a real dataset switched on (SATLIB_CUB_ROOT or SATLIB_IMAGENET_ROOT) $SATLIB_CACHE is kept and
cells have no time limit, so hours of GPU training are neither cut short nor thrown away. Volatile
metadata (timings, widget state, the interpreter's version) is stripped and the file is replaced
atomically, so an interrupted run leaves the previous notebook intact.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import yaml
from nbclient import NotebookClient

from satlib.book.widgets import WIDGET_VIEW
from satlib.files import atomic_write_text

ROOT = Path(__file__).resolve().parent.parent
KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}
REAL_DATA_SWITCHES = ("SATLIB_CUB_ROOT", "SATLIB_IMAGENET_ROOT")  # with one of them set, the cache is kept


def toc_files(toc: dict) -> list[str]:
    """The files of a jupyter-book toc after its root, in order: its `chapters`, or the chapters of its `parts`."""
    chapters = toc.get("chapters") or [entry for part in toc.get("parts", []) for entry in part.get("chapters", [])]
    return [entry["file"] for entry in chapters]


def toc_notebooks(root: Path = ROOT) -> list[Path]:
    """Every .ipynb chapter of _toc.yml (appendix included), in order."""
    files = toc_files(yaml.safe_load((root / "_toc.yml").read_text()))
    return [root / f"{name}.ipynb" for name in files if (root / f"{name}.ipynb").is_file()]


def strip_volatile(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Drop what changes run to run without changing the content: timings, widget state and views, versions."""
    nb.metadata.pop("widgets", None)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        cell.metadata.pop("collapsed", None)
        cell.metadata.pop("scrolled", None)
        for output in cell.get("outputs", []):
            output.get("metadata", {}).pop("transient", None)
            output.pop("transient", None)
        # live controls (satlib.book.explore) have no state once saved: keep the figure they drew
        if "outputs" in cell:  # code cells only: a markdown cell with outputs is an invalid notebook
            cell["outputs"] = [output for output in cell["outputs"] if WIDGET_VIEW not in output.get("data", {})]
    return nb


def execute(path: Path, timeout: int | None = 900, out: Path | None = None,
            env: dict[str, str] | None = None) -> float:
    """Run one notebook and write it in place, or into the folder `out`; returns the seconds it took.

    `timeout` is per cell (None: no limit); `env` is the kernel's whole environment (default: this
    process's). The kernel's working directory is the notebook's own folder (as nbval runs it).
    """
    nb = nbformat.read(path, as_version=4)
    started = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                   resources={"metadata": {"path": str(path.parent)}}).execute(**({"env": env} if env else {}))
    seconds = time.perf_counter() - started
    nbformat.validate(nb)
    text = nbformat.writes(strip_volatile(nb))
    text += "" if text.endswith("\n") else "\n"
    target = path if out is None else Path(out) / path.name
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, text)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every chapter of _toc.yml")
    parser.add_argument("--timeout", type=int, help="seconds per cell (default 900; no limit on real data)")
    parser.add_argument("--keep-cache", action="store_true", help="use $SATLIB_CACHE as it is")
    parser.add_argument("--out", type=Path, help="write the executed notebooks into this folder instead of in place")
    args = parser.parse_args(argv)
    paths = [p.resolve() for p in args.notebooks] or toc_notebooks()
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        parser.error(f"no such notebook: {', '.join(missing)}")
    real_data = any(os.environ.get(name) for name in REAL_DATA_SWITCHES)
    timeout = args.timeout or (None if real_data else 900)
    with tempfile.TemporaryDirectory(prefix="satlib-book-cache-") as cache:
        if not (args.keep_cache or real_data):
            os.environ["SATLIB_CACHE"] = cache  # the kernels inherit it
        for path in paths:
            print(f"executing {path.relative_to(ROOT)} ...", flush=True)
            print(f"  done in {execute(path, timeout, args.out):.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
