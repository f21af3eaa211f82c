"""bench/cost.py: a GPU run's time and memory estimated from FLOPs, labelled as an estimate; the card of a
CUDA device recognised by name and memory; the script prints a recipe's estimate."""

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from satlib.config import load_config

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from cost import ModelCost, estimate_gpu_run, gpu_kind, main, model_cost

TINY_DEIT = ["model.name=sat_deit_tiny_patch16_224", "model.kwargs={patch_size: 8, embed_dim: 32, depth: 3, "
             "num_heads: 2}", "data.img_size=32", "data.resize_size=32", "model.num_classes=3", "model.pretrained=''"]


def test_model_cost_counts_the_models_matmuls_and_convolutions():
    cost = model_cost(load_config("cub", TINY_DEIT))
    tokens, width = 16 + 2, 32  # 4x4 patches, cls and loc
    block = 2 * tokens * width * 3 * width + 2 * 2 * tokens * tokens * width + 2 * tokens * width * width \
        + 2 * 2 * tokens * width * 4 * width  # qkv, QK^T and AV, projection, MLP
    expected = 2 * 3 * 8 * 8 * width * 16 + 3 * block + 2 * 9 * width * 3 * 16  # patch embedding, blocks, conv head
    assert cost.forward_gflop * 1e9 == pytest.approx(expected, rel=1e-3)
    assert 2.5 < cost.train_gflop / cost.forward_gflop < 3.1  # the backward is about twice the forward
    assert cost.parameters == 45_859 and cost.activation_mib > 0


def test_estimate_is_labelled_and_follows_its_assumptions():
    config = load_config("imagenet")
    cost = ModelCost(forward_gflop=10.0, train_gflop=30.0, activation_mib=80.0, parameters=25_000_000)
    h100 = estimate_gpu_run(config, gpu="H100", cost=cost, loader_workers=1000)  # a loader that keeps up
    assert h100.describe().startswith("ESTIMATE from FLOPs (not a measurement)")
    assert h100.train_images == 1_281_167 // 512 * 512 and h100.eval_images == 50_000
    assert h100.train_hours * 3600 == pytest.approx(h100.train_images * 30.0 / (989e3 * 0.3))
    assert not h100.loader_bound and h100.grad_accum_to_fit == 1
    assert h100.memory_gib == pytest.approx(1.0 + 25e6 * 16 / 2**30 + 512 * 80 / 1024)
    twice = estimate_gpu_run(config, gpu="H100", cost=cost, loader_workers=1000, utilization=0.6)
    assert twice.train_hours == pytest.approx(h100.train_hours / 2)
    small = estimate_gpu_run(config, gpu="L4", cost=cost)
    assert small.grad_accum_to_fit == 2 and "does not fit" in small.describe()
    slow_loader = estimate_gpu_run(config, gpu="H100", cost=cost, loader_workers=2)
    assert slow_loader.loader_bound and slow_loader.train_hours > h100.train_hours
    tencrop = estimate_gpu_run(load_config("cub"), gpu="H100", cost=cost)
    assert tencrop.eval_gflop_per_image == 11 * 10.0 and tencrop.eval_images == 5 * 5_794
    with pytest.raises(ValueError, match="unknown gpu 'TPU'"):
        estimate_gpu_run(config, gpu="TPU", cost=cost)


def fake_gpu(monkeypatch, name: str, gib: float) -> torch.device:
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda device=None: SimpleNamespace(total_memory=int(gib * 2**30)))
    return torch.device("cuda")


@pytest.mark.parametrize(("name", "gib", "kind"), [
    ("NVIDIA A100-SXM4-40GB", 39.4, "A100-40GB"), ("NVIDIA A100-SXM4-80GB", 79.2, "A100"),
    ("NVIDIA L4", 22.5, "L4"), ("NVIDIA L40S", 44.5, "L40S"), ("NVIDIA H200", 139.8, "H200"),
    ("Tesla T4", 15.0, None)])
def test_a_gpu_is_recognised_by_name_and_memory(monkeypatch, name, gib, kind):
    assert gpu_kind(fake_gpu(monkeypatch, name, gib)) == kind
    assert gpu_kind(torch.device("cpu")) is None


def test_the_script_prints_a_recipes_estimate_with_its_overrides(capsys):
    main(["cub", "--gpu", "L4", "--gpus", "2", "--set", *TINY_DEIT, "train.epochs=3"])
    text = capsys.readouterr().out
    assert text.startswith("ESTIMATE from FLOPs (not a measurement): the cub recipe on 2x L4")
    assert f"{5_994 // 256 * 256 * 3:,} images x" in text  # 3 epochs of the CUB split, 256 images a step
    with pytest.raises(SystemExit):
        main(["cub", "--gpu", "TPU"])
