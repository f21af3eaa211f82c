import multiprocessing.process
import os
import subprocess
from types import SimpleNamespace

import pytest
import torch

from satlib.config import load_config

from tiny_recipe import tiny_overrides

# Two cores: more threads than cores makes OpenMP spin; keep every test on the cores we have.
torch.set_num_threads(min(2, os.cpu_count() or 1))


# Test tiers. SATLIB_TEST_TIER=unit keeps the unit tier: every test with none of the NOT_UNIT markers, so no
# training run, no other process, no browser, no CUDA; SATLIB_TEST_TIER=rest keeps the others; unset, all run.
# Tests that use one of the FIXTURE_TIERS fixtures get its marker; others carry theirs. In the unit tier a test or
# fixture that trains or starts a process fails, naming the marker it needs (`unit_tier_guard`), so the tiers
# cannot drift.
NOT_UNIT = ("slow", "trains", "spawns", "browser", "gpu")
FIXTURE_TIERS = {"trained_run": "trains", "demo_run": "trains", "built_book": "spawns"}  # fixture -> marker
TIER = os.environ.get("SATLIB_TEST_TIER", "")
if TIER not in ("", "unit", "rest"):
    raise pytest.UsageError(f"SATLIB_TEST_TIER={TIER!r}: expected unit, rest or nothing (every test)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        for fixture, marker in FIXTURE_TIERS.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(marker)
    if TIER:
        in_rest = [any(marker in item.keywords for marker in NOT_UNIT) for item in items]
        config.hook.pytest_deselected(items=[i for i, rest in zip(items, in_rest) if rest != (TIER == "rest")])
        items[:] = [i for i, rest in zip(items, in_rest) if rest == (TIER == "rest")]
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


class UnitTierError(AssertionError):
    """A test in the unit tier trained a model or started a process: it belongs to another tier."""


@pytest.fixture(scope="session", autouse=True)
def unit_tier_guard():
    """Under SATLIB_TEST_TIER=unit, training an epoch or starting a process fails the test (or the fixture, of any
    scope: this one comes first), naming the marker it needs."""
    if TIER != "unit":
        yield
        return

    def refuse(what: str, marker: str):
        def refused(*args, **kwargs):
            raise UnitTierError(f"{what} in the unit tier: mark the test @pytest.mark.{marker} "
                                f"(tests/conftest.py, NOT_UNIT)")
        return refused

    import satlib.train

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(satlib.train, "run_epoch", refuse("a training epoch", "trains"))
        patch.setattr(subprocess.Popen, "__init__", refuse("a subprocess", "spawns"))
        patch.setattr(multiprocessing.process.BaseProcess, "start", refuse("another process", "spawns"))
        yield


@pytest.fixture
def seeded():
    torch.manual_seed(0)
    return torch.Generator().manual_seed(0)


# A tiny synthetic CUB-layout set and a tiny recipe, shared by the training, CLI and predict tests.
@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    from satlib.data.synthetic import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path_factory.mktemp("synth") / "tiny", num_classes=3, per_class=10,
                                  size=32, seed=0)


@pytest.fixture
def tiny_config(tiny_data, tmp_path):
    def make(**extra):
        return load_config("synthetic_cpu", tiny_overrides(tiny_data, tmp_path / "run", **extra))
    return make


SHARED_RUN = {"train.epochs": 3}  # tiny_overrides' recipe, three evaluated epochs


@pytest.fixture(scope="session")
def trained_run(tiny_data, tmp_path_factory):
    """One short training run shared by every test that only reads a trained run's outputs.

    Fields: out (checkpoint.pt, best.pt, metrics.json, config.yaml), checkpoint, record (what train
    returned) and overrides (to train the same run again elsewhere: `overrides(out_dir)`).
    """
    from satlib.train import train

    def overrides(out):
        return tiny_overrides(tiny_data, out, **SHARED_RUN)

    out = tmp_path_factory.mktemp("shared_run")
    record = train(load_config("synthetic_cpu", overrides(out)), progress=False)
    return SimpleNamespace(out=out, checkpoint=out / "checkpoint.pt", record=record, overrides=overrides)
