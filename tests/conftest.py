import os

import pytest
import torch

from satlib.config import load_config

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

TINY_MODEL = {"stem_widths": [8, 16, 16], "embed_dim": 32, "depth": 3, "num_heads": 2}


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    from satlib.data.synthetic import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path_factory.mktemp("synth") / "tiny", num_classes=3, per_class=10,
                                  size=32, seed=0)


def tiny_overrides(data_root, out, **extra):
    overrides = {
        "data.dataset": "cub", "data.root": str(data_root), "data.img_size": 32, "data.resize_size": 32,
        "data.workers": 0, "model.name": "sat_tiny_convstem", "model.kwargs": TINY_MODEL,
        "model.drop_path_rate": 0.0, "train.out": str(out), "train.epochs": 2, "train.batch_size": 8,
        "train.lr": 2e-3, "train.warmup_epochs": 0, "train.eval_every": 1, "train.log_every": 1,
        "train.seed": 0, "eval.thresholds": [0.2, 0.5, 0.8], "eval.batch_size": 16,
    }
    overrides.update(extra)
    return [f"{key}={value!r}" if isinstance(value, str) else f"{key}={value}" for key, value in overrides.items()]


@pytest.fixture
def tiny_config(tiny_data, tmp_path):
    def make(**extra):
        return load_config("synthetic_cpu", tiny_overrides(tiny_data, tmp_path / "run", **extra))
    return make
