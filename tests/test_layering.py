"""Dependency direction, read from the import statements: nothing but the drivers imports the training
loop, data and evaluation never import the model, and the loss never imports the model."""

import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SATLIB = ROOT / "satlib"
DRIVERS = {"train.py", "cli.py", "demo.py", "notebook.py",  # the loop itself and what runs it (the book's runs too,
           "pretrained/__main__.py"}  # the stand-in backbone's pretraining)
# the loop, its schedules, and the two functions chapter 4 prints as the source of one training step
BOOK_MAY_IMPORT_FROM_TRAIN = {"train", "learning_rate", "constraint_ramp", "run_epoch", "optimizer_step"}


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


def test_only_the_drivers_import_the_training_loop():
    files = [p for p in SATLIB.rglob("*.py") if p.relative_to(SATLIB).as_posix() not in DRIVERS]
    assert importers_of("satlib.train", files) == []


@pytest.mark.parametrize("package", ["data", "evaluation"])
def test_data_and_evaluation_never_import_the_model_or_the_loop(package):
    files = list((SATLIB / package).rglob("*.py"))
    assert importers_of("satlib.models", files) == [] and importers_of("satlib.train", files) == []


def test_losses_never_import_the_model():
    assert importers_of("satlib.models", [SATLIB / "losses.py"]) == []


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
