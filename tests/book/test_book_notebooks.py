"""The book's sources: the toc, the chapters' flags, committed outputs, figures and conventions (fast, no kernel)."""

from __future__ import annotations

import base64
import importlib.util
import re
import struct
import sys

import nbformat
import pytest
import yaml

from satlib.book.recipes import GPU_COST

from book_helpers import ROOT, chapter_notebooks, figure_count, removed_outputs, toc_files

CHAPTERS = ["book/00_wsol", "book/01_token_injection", "book/02_attention_querying", "book/03_constraints",
            "book/04_training", "book/05_measuring", "book/06_cub", "book/07_imagenet", "book/08_your_work",
            "book/09_gradcam"]
APPENDIX = ["book/10_making_it_fast"]  # after the chapters, in a part of its own
PLACEHOLDER = "This chapter is being written"
MAX_FIGURE_BYTES = 450_000  # a figure of 24 photo panels with map overlays is ~400 KB as PNG
MAX_FIGURE_WIDTH = 1200  # pixels: figures are drawn at dpi 80-100
MACHINE_PATH = re.compile(r"(?<![\w.])/(?:tmp|work|root|home)/")
SWITCHES = ("SATLIB_DEVICE", "SATLIB_CUB_ROOT", "SATLIB_IMAGENET_ROOT", "SATLIB_FULL_RUN", "SATLIB_OFFICIAL_CHECKPOINT",
            "SATLIB_PRETRAINED", "SATLIB_SMOKE", "SATLIB_CACHE")
OLD_FLAGS = re.compile(r"(?<!SATLIB_)\b(?:USE_GPU|DATA_ROOT|FULL_RUN|OFFICIAL_CHECKPOINT)\b")
OWN_SWITCH = re.compile(r"(?:environ|getenv)\W+[^\n]*SATLIB_")
CACHE_CHECK = re.compile(r"""\[["']config["']\]\s*==|\.get\(["']config["']\)|def finished\(""")


def notebooks() -> list:
    return [pytest.param(path, id=path.stem) for path in chapter_notebooks()]


def written(nb) -> bool:
    """A chapter with content (not the placeholder of a chapter still being written)."""
    return not any(PLACEHOLDER in cell.source for cell in nb.cells if cell.cell_type == "markdown")


def code_cells(nb) -> list:
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def test_toc_lists_the_chapters_in_order():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    assert toc["format"] == "jb-book"
    assert toc_files() == ["book/index", *CHAPTERS, *APPENDIX]
    assert toc["parts"][-1] == {"caption": "Appendix", "chapters": [{"file": name} for name in APPENDIX]}
    assert (ROOT / "book" / "index.md").is_file()
    for name in CHAPTERS + APPENDIX:
        assert (ROOT / f"{name}.ipynb").is_file(), f"{name}.ipynb listed in _toc.yml but missing"


def test_config_never_executes_and_builds_only_the_toc():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["execute"]["execute_notebooks"] == "off"
    assert config["only_build_toc_files"] is True


def test_landing_page_links_every_chapter():
    text = (ROOT / "book" / "index.md").read_text()
    for name in CHAPTERS + APPENDIX:
        assert f"{{doc}}`{name.split('/')[-1]}`" in text, f"book/index.md does not link {name}"
    for switch in SWITCHES:
        assert switch in text, f"book/index.md does not explain {switch}"


@pytest.mark.parametrize("path", notebooks())
def test_chapter_is_valid_and_executed(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    cells = code_cells(nb)
    assert cells, f"{path.name}: no code cell"
    counts = [cell.execution_count for cell in cells]
    assert counts == list(range(1, len(cells) + 1)), \
        f"{path.name}: execution counts {counts}: run `make notebooks` to execute it top to bottom"
    for index, cell in enumerate(cells):
        for output in cell.outputs:
            assert output.output_type != "error", f"{path.name}: code cell {index} raised {output.get('ename')}"
            text = output.get("text", "") if output.output_type == "stream" else ""
            assert "Traceback" not in text, f"{path.name}: code cell {index} printed a traceback"


@pytest.mark.parametrize("path", notebooks())
def test_no_volatile_metadata_or_machine_paths(path):
    nb = nbformat.read(path, as_version=4)
    assert "widgets" not in nb.metadata, f"{path.name}: widget state in the metadata (run make notebooks)"
    for index, cell in enumerate(nb.cells):
        assert "execution" not in cell.metadata, f"{path.name}: cell {index} carries execution timings"
        for output in cell.get("outputs", []):
            text = output.get("text", "") + "".join(output.get("data", {}).get("text/plain", ""))
            match = MACHINE_PATH.search(text)
            assert match is None, \
                f"{path.name}: cell {index} output shows a machine path: ...{text[match.start():][:60]}"


@pytest.mark.parametrize("path", notebooks())
def test_first_code_cell_reads_the_switches_through_the_helper(path):
    """The SATLIB_* switches reach a chapter only through satlib.book.setup(), in its first cell, and
    its runs only through settings.run (keyed by config): no pasted flags, no chapter-made cache check."""
    nb = nbformat.read(path, as_version=4)
    assert written(nb), f"{path.name} is still a placeholder"
    first = code_cells(nb)[0].source
    assert "from satlib.book import setup" in first, f"{path.name}: first code cell does not import setup"
    assert re.search(r"^settings = setup\(\)", first, re.M), f"{path.name}: first code cell does not call setup()"
    for index, cell in enumerate(nb.cells):
        stale = OLD_FLAGS.search(cell.source)
        assert stale is None, f"{path.name}: cell {index} still names the old flag {stale.group(0)}"
        if cell.cell_type == "code":
            assert not OWN_SWITCH.search(cell.source), f"{path.name}: cell {index} reads a SATLIB_* switch itself"
            assert not CACHE_CHECK.search(cell.source), \
                f"{path.name}: cell {index} checks a cached run itself (use settings.run(config))"


def _png_width(data: bytes) -> int:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">I", data[16:20])[0]


@pytest.mark.parametrize("path", notebooks())
def test_figures_present_and_small(path):
    nb = nbformat.read(path, as_version=4)
    assert written(nb), f"{path.name} is still a placeholder"
    assert figure_count(path) >= 1, f"{path.name}: no figure in the outputs"
    for index, cell in enumerate(code_cells(nb)):
        for output in cell.outputs:
            encoded = output.get("data", {}).get("image/png")
            if encoded is None:
                continue
            data = base64.b64decode(encoded)
            assert len(data) <= MAX_FIGURE_BYTES, f"{path.name}: code cell {index} has a {len(data)} byte figure"
            assert _png_width(data) <= MAX_FIGURE_WIDTH, f"{path.name}: code cell {index} figure too wide"


@pytest.mark.parametrize("path", notebooks())
def test_cells_follow_the_conventions(path):
    """Varying outputs are ignored by nbval, widgets have a static figure after them, no model copy."""
    nb = nbformat.read(path, as_version=4)
    cells = code_cells(nb)
    for index, cell in enumerate(cells):
        source = cell.source
        if re.search(r"perf_counter|timeit|process_time", source):
            assert "# NBVAL_IGNORE_OUTPUT" in source, f"{path.name}: code cell {index} times something"
        if "NBVAL_CHECK_OUTPUT" in source:
            assert cell.outputs, f"{path.name}: code cell {index} is checked by nbval but has no output"
        if "widgets.interact" in source or "widgets.interactive" in source:
            assert removed_outputs(cell), f"{path.name}: widget cell {index} needs the remove-output tag"
            after = cells[index + 1] if index + 1 < len(cells) else None
            assert after is not None and any("image/png" in o.get("data", {}) for o in after.outputs), \
                f"{path.name}: widget cell {index} is not followed by a static figure"
        assert not re.search(r"class \w+\((?:torch\.)?nn\.Module\)", source), \
            f"{path.name}: code cell {index} defines a module: chapters import satlib's"


def _run_notebooks_module():
    spec = importlib.util.spec_from_file_location("run_notebooks", ROOT / "book" / "run_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_run_notebooks_lists_the_toc_and_strips_volatile_metadata():
    run_notebooks = _run_notebooks_module()
    listed = [p.relative_to(ROOT).with_suffix("").as_posix() for p in run_notebooks.toc_notebooks()]
    assert listed == CHAPTERS + APPENDIX
    assert run_notebooks.toc_files({"chapters": [{"file": "a"}]}) == ["a"]  # a toc without parts
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1"), nbformat.v4.new_markdown_cell("text")])
    nb.metadata.update(widgets={"state": {}}, language_info={"name": "python", "version": "3.11.2"})
    nb.cells[0].metadata["execution"] = {"iopub.status.busy": "2025-01-01T00:00:00"}
    nb.cells[0].outputs = [nbformat.v4.new_output("display_data", data={"text/plain": "x"},
                                                  metadata={"transient": {"display_id": "a"}})]
    stripped = run_notebooks.strip_volatile(nb)
    assert "widgets" not in stripped.metadata
    assert stripped.metadata.language_info == {"name": "python"}
    assert stripped.metadata.kernelspec["name"] == "python3"
    assert "execution" not in stripped.cells[0].metadata
    assert "transient" not in stripped.cells[0].outputs[0].metadata
    nbformat.validate(stripped)


def test_the_rehearsal_checks_the_real_data_branch_of_every_chapter(monkeypatch, tmp_path):
    """book/rehearse.py runs every toc chapter and knows what each prints on its real-data branch."""
    monkeypatch.syspath_prepend(str(ROOT / "book"))
    spec = importlib.util.spec_from_file_location("rehearse", ROOT / "book" / "rehearse.py")
    rehearse = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "rehearse", rehearse)  # its dataclasses look their module up
    spec.loader.exec_module(rehearse)
    chapters = [name.split("/")[-1] for name in CHAPTERS + APPENDIX]
    assert {key.split("+")[0] for key in rehearse.BRANCH_MARKS} == set(chapters)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)")])
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", text="model: sat_tiny_convstem\n")]
    assert "model: sat_tiny_convstem" in rehearse.output_text(nb)
    nbformat.write(nb, tmp_path / "00_wsol.ipynb")  # the stand-in's branch ran, not CUB's
    with pytest.raises(RuntimeError, match="the real-data branch did not run"):
        rehearse.check_marks(tmp_path / "00_wsol.ipynb", "00_wsol")
    nb.cells[0].outputs[0].text = "\n".join(["model: sat_deit_small_patch16_224", rehearse.NOTES, GPU_COST, ""])
    nbformat.write(nb, tmp_path / "00_wsol.ipynb")
    rehearse.check_marks(tmp_path / "00_wsol.ipynb", "00_wsol")
    split = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(name, value)")])
    split.cells[0].outputs = [nbformat.v4.new_output("stream", text="model: sat_deit_small_patch16_224"),
                              nbformat.v4.new_output("stream", name="stderr", text="UserWarning: ...\n"),
                              nbformat.v4.new_output("stream", text=" {'both constraints': (1.0, 1.0)}\n")]
    assert "sat_deit_small_patch16_224 {'both" in rehearse.output_text(split)  # a print a warning cut in two
    with pytest.raises(RuntimeError, match="pretrained backbone"):  # the small pass also checks it ran offline
        rehearse.check_marks(tmp_path / "00_wsol.ipynb", "00_wsol", extra=(rehearse.OFFLINE,))


def _rehearse_module(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "book"))
    spec = importlib.util.spec_from_file_location("rehearse", ROOT / "book" / "rehearse.py")
    rehearse = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "rehearse", rehearse)  # its dataclasses look their module up
    spec.loader.exec_module(rehearse)
    return rehearse


def test_the_rehearsal_runs_the_cub_chapters_on_a_small_set_offline(monkeypatch, tmp_path):
    """The small pass: 6 classes, 6 training and 3 test photos a class, SATLIB_PRETRAINED set and no ImageNet;
    every chapter that reads SATLIB_CUB_ROOT takes part."""
    rehearse = _rehearse_module(monkeypatch)
    small = [p for p in rehearse.book_passes(tmp_path) if p.name == "small"][0]
    reads_cub = [path.stem for path in chapter_notebooks()
                 if any("settings.cub_root" in cell.source or "shared_recipe(" in cell.source
                        for cell in code_cells(nbformat.read(path, as_version=4)))]
    assert sorted(small.chapters) == sorted(reads_cub)
    env = rehearse.pass_environment({"SATLIB_IMAGENET_ROOT": "ILSVRC", "SATLIB_SMOKE": "1"}, small.env)
    assert "SATLIB_IMAGENET_ROOT" not in env and env["SATLIB_SMOKE"] == "1"
    assert env["SATLIB_CUB_ROOT"] == str(tmp_path / "cub-small")
    assert env["SATLIB_PRETRAINED"].endswith("deit_small_patch16_224-cd65a155.pth")

    from satlib.data.cub import read_split_boxes
    from satlib.data.dataset import build_dataset

    root = rehearse.write_small_set(tmp_path / "cub-small")
    train = build_dataset("cub", root, "train")
    sizes, boxes = read_split_boxes(root)
    assert (train.num_classes, len(train), len(boxes)) == (6, 36, 18)
    assert len({(w, h) for w, h in sizes}) > 1 and any(w != h for w, h in sizes)  # photos of their own sizes
