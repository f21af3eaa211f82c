import os
from types import SimpleNamespace

import pytest
import torch

from satlib.config import load_config

from tiny_recipe import tiny_overrides

# Two cores: more threads than cores makes OpenMP spin; keep every test on the cores we have.
torch.set_num_threads(min(2, os.cpu_count() or 1))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


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
