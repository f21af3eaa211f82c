"""Dependency direction, read from the import statements (function-local ones included).

    drivers (train, cli, demo, the book)  ->  build (config -> objects), evaluate, assess, predict, maps
                                              and mapfile (any method's maps), tensorboard (the loop's writer)
    build  ->  models, data, losses, evaluation, checkpoint (pure I/O), export (a model's folder), config
    models, data, evaluation, losses      take tensors, files and plain arguments

Nothing but the drivers imports the training loop; data never imports the model or a config;
checkpoint.py is I/O only; evaluation sees arrays and boxes, never a config or a dataset file;
models never import the loss, the data, the config, the checkpoint or the loop. No module takes a
`_private` name from another, no package hides its imports behind a module-level `__getattr__`, and
one function reads the SATLIB_SMOKE switch.
"""

import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SATLIB = ROOT / "satlib"
DRIVERS = {"train.py", "cli.py", "demo.py", "pretrained/__main__.py"}  # the loop, what runs it, the pretraining
DRIVER_PACKAGES = ("book",)  # satlib/book/: the book's runs
# the loop, its schedules, and the functions chapter 4 prints as the source of one training step
BOOK_MAY_IMPORT_FROM_TRAIN = {"train", "learning_rate", "constraint_ramp", "run_epoch", "micro_step", "optimizer_step"}

# package or module -> what it must never import (a module, or anything under a package)
NEVER = {
    "data": ("satlib.models", "satlib.config", "satlib.build", "satlib.checkpoint", "satlib.train"),
    "checkpoint.py": ("satlib.data", "satlib.models", "satlib.build", "satlib.config"),
    "evaluation": ("satlib.config", "satlib.data", "satlib.models", "satlib.build", "satlib.checkpoint",
                   "satlib.train", "satlib.maps", "satlib.mapfile"),
    # scoring maps reads a dataset and the evaluator, never the loop; the maps file never scores
    "maps.py": ("satlib.train", "satlib.tensorboard"),
    "mapfile.py": ("satlib.train", "satlib.maps"),
    # a trained model's folder: written from a loaded model, read by build.load (so it never imports build)
    "export.py": ("satlib.build", "satlib.data", "satlib.train", "satlib.checkpoint"),
    # the loop's TensorBoard writer sees a config, a test set and a model, never the loop or the builder
    "tensorboard.py": ("satlib.train", "satlib.build"),
    "models": ("satlib.losses", "satlib.data", "satlib.config", "satlib.checkpoint", "satlib.build",
               "satlib.train"),
    "losses.py": ("satlib.models", "satlib.data", "satlib.config"),
}


def imported(path: Path) -> set[str]:
    """Every module a file imports, and module.name for each `from module import name`."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path}: relative import"
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def importers_of(module: str, files) -> list[str]:
    return sorted(str(p.relative_to(ROOT)) for p in files
                  if any(name == module or name.startswith(module + ".") for name in imported(p)))


def files_of(part: str) -> list[Path]:
    """The .py files of satlib/<part> (a package folder or a module file)."""
    path = SATLIB / part
    return sorted(path.rglob("*.py")) if path.is_dir() else [path]


def module_name(path: Path) -> str:
    """satlib/evaluation/boxes.py -> satlib.evaluation.boxes (a package's __init__ -> the package)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_driver(path: Path) -> bool:
    relative = path.relative_to(SATLIB)
    return relative.as_posix() in DRIVERS or relative.parts[0] in DRIVER_PACKAGES


def test_only_the_drivers_import_the_training_loop():
    files = [p for p in SATLIB.rglob("*.py") if not is_driver(p)]
    assert importers_of("satlib.train", files) == []


def test_only_the_book_imports_the_book():
    """satlib.book is the chapters' machinery: `import satlib` never loads it, and no library module uses it."""
    files = [p for p in SATLIB.rglob("*.py") if not p.is_relative_to(SATLIB / "book")]
    assert importers_of("satlib.book", files) == []



@pytest.mark.parametrize(("part", "forbidden"), [
    (part, module) for part, modules in NEVER.items() for module in modules])
def test_never_imports(part, forbidden):
    assert importers_of(forbidden, files_of(part)) == []


def test_no_private_name_is_imported_from_another_module():
    """`from satlib.x import _name` only inside x itself; private modules (`_unionfind`) may be imported."""
    found = []
    for path in SATLIB.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("satlib"):
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                if private and node.module != module_name(path):
                    found.append(f"{path.relative_to(ROOT)}: from {node.module} import {', '.join(private)}")
    assert found == []


def test_no_package_hides_its_imports_behind_getattr():
    """A module-level `__getattr__` imports on attribute access, where the graph does not show it."""
    hiding = [str(p.relative_to(ROOT)) for p in SATLIB.rglob("*.py")
              if any(isinstance(node, ast.FunctionDef) and node.name == "__getattr__"
                     for node in ast.parse(p.read_text()).body)]
    assert hiding == []


def test_one_module_reads_the_smoke_switch():
    """SATLIB_SMOKE is read from the environment in satlib/config.py only (`smoke`)."""
    reads = re.compile(r"(environ(\.get)?[(\[]|getenv\()\s*(SMOKE_ENV|[\"']SATLIB_SMOKE)")
    readers = sorted(str(p.relative_to(ROOT)) for p in SATLIB.rglob("*.py") if reads.search(p.read_text()))
    assert readers == ["satlib/config.py"]


def test_the_smoke_switch_is_applied_in_one_place():
    """Only config.py turns the switch into caps (`apply_smoke` sets train.max_steps, eval.max_batches, ...);
    the loop, the data, the checkpoints and the evaluation read those fields. The book's settings may show
    whether the switch is on."""
    pattern = re.compile(r"\b(smoke|work_limits|apply_smoke)\(|\bSMOKE_ENV\b")
    book = [p for p in SATLIB.rglob("*.py") if p.name == "notebook.py" or p.relative_to(SATLIB).parts[0] == "book"]
    users = sorted(str(p.relative_to(ROOT)) for p in SATLIB.rglob("*.py")
                   if pattern.search(p.read_text()) and p.name != "config.py" and p not in book)
    assert users == ["satlib/assess.py"]  # evaluating a checkpoint applies the caps to its stored config


def test_the_book_imports_only_the_loop_and_its_schedules_from_train():
    pattern = re.compile(r"^\s*from satlib\.train import \(?([\w ,]+)\)?", re.MULTILINE)
    seen = set()
    for notebook in sorted((ROOT / "book").glob("*.ipynb")):
        cells = json.loads(notebook.read_text())["cells"]
        source = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        assert "import satlib.train" not in source, notebook.name
        for match in pattern.finditer(source):
            names = {name.strip() for name in match.group(1).split(",")}
            assert names <= BOOK_MAY_IMPORT_FROM_TRAIN, (notebook.name, names - BOOK_MAY_IMPORT_FROM_TRAIN)
            seen |= names
    assert "train" in seen  # the pattern does find the book's imports
