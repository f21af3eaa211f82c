"""The test tiers cannot drift: in the unit tier a test that trains or starts a process fails, naming its marker.

A scratch test folder with the project's conftest runs under pytest in its own process (the guard patches
this process's subprocess and multiprocessing while it is on), once per tier.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
SCRATCH_TESTS = '''
import subprocess
import sys

import pytest
import torch

from satlib.config import load_config
from satlib.train import train

from tiny_recipe import tiny_overrides


def test_a_plain_unit_test():
    assert torch.ones(2).sum() == 2


def test_starts_a_process_unmarked():
    subprocess.run([sys.executable, "-c", "pass"], check=True)


def test_trains_unmarked(tiny_data, tmp_path):
    train(load_config("synthetic_cpu", tiny_overrides(tiny_data, tmp_path / "run", **{"train.epochs": 1})),
          progress=False)


@pytest.mark.spawns
def test_starts_a_process_marked():
    subprocess.run([sys.executable, "-c", "pass"], check=True)
'''


def run_tier(folder: Path, tier: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SATLIB_TEST_TIER": tier, "PYTHONPATH": os.pathsep.join(
        [str(TESTS.parent), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rf", str(folder)],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.spawns
def test_the_unit_tier_refuses_what_belongs_to_another_tier(tmp_path):
    folder = tmp_path / "tests"
    folder.mkdir()
    for name in ("conftest.py", "tiny_recipe.py"):
        (folder / name).write_text((TESTS / name).read_text())
    (folder / "test_scratch.py").write_text(SCRATCH_TESTS)

    unit = run_tier(folder, "unit")
    assert "1 deselected" in unit.stdout and "2 failed, 1 passed" in unit.stdout, unit.stdout + unit.stderr
    assert "a subprocess in the unit tier: mark the test @pytest.mark.spawns" in unit.stdout
    assert "a training epoch in the unit tier: mark the test @pytest.mark.trains" in unit.stdout

    rest = run_tier(folder, "rest")  # only the marked test, and it may start its process
    assert "1 passed, 3 deselected" in rest.stdout, rest.stdout + rest.stderr
