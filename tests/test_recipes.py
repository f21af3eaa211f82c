"""The paper's recipes: configs/cub.yaml and imagenet.yaml are the official ones; what differs is listed; a GPU
run's needs are estimated from FLOPs and labelled as an estimate."""


import pytest

from satlib.config import load_config
from satlib.recipes import (
    IMPLEMENTATION_DIFFERENCES,
    OFFICIAL,
    ModelCost,
    estimate_gpu_run,
    model_cost,
    official_differences,
)

TINY_DEIT = ["model.name=sat_deit_tiny_patch16_224", "model.kwargs={patch_size: 8, embed_dim: 32, depth: 3, "
             "num_heads: 2}", "data.img_size=32", "data.resize_size=32", "model.num_classes=3", "model.pretrained=''"]


@pytest.mark.parametrize("recipe", ["cub", "imagenet"])
def test_packaged_recipe_is_the_official_one(recipe, monkeypatch):
    monkeypatch.delenv("SATLIB_SMOKE", raising=False)
    config = load_config(recipe)
    world = {"cub": 1, "imagenet": 4}[recipe]  # imagenet.yaml is for torchrun on 4 GPUs, as the official run
    fixed = IMPLEMENTATION_DIFFERENCES["all"] + IMPLEMENTATION_DIFFERENCES[recipe]
    differences = official_differences(config, world=world)
    assert differences == [line for line in differences if line.startswith("train.amp")] + fixed
    t = config.train
    assert (t.constraint_warmup_epochs, t.clip_grad, t.time_budget, t.warmup_epochs) == (0, 0, 0, 0)
    assert [epoch for epoch in range(1, t.epochs + 1) if t.evaluates_after(epoch)] == \
        OFFICIAL[recipe]["evaluated_epochs"]


def test_every_departure_from_the_recipe_is_named(monkeypatch):
    monkeypatch.setenv("SATLIB_SMOKE", "1")
    config = load_config("cub", ["train.epochs=2", "train.eval_every=1", "train.constraint_warmup_epochs=2",
                                 "train.time_budget=240", "train.batch_size=128", "train.grad_accum=2",
                                 "eval.tencrop=false", "model.name=sat_tiny_convstem"])
    lines = official_differences(config)
    for expected in ("train.epochs = 2 (official: 30)", "train.constraint_warmup_epochs = 2.0 (official: 0.0)",
                     "train.time_budget = 240.0 (official: 0.0)", "eval.tencrop = False (official: True)",
                     "model.name = 'sat_tiny_convstem' (official: 'sat_deit_small_patch16_224')",
                     "evaluated after epochs 2 (official: 26-30)", "SATLIB_SMOKE=1"):
        assert any(line.startswith(expected) for line in lines), (expected, lines)
    assert any(line.startswith("the area constraint spans 128 images") and "official: 256" in line for line in lines)
    imagenet = load_config("imagenet")  # one process, 512 images: the official splits them into 4 x 128
    assert any("area constraint spans 512" in line for line in official_differences(imagenet))
    as_official = load_config("imagenet", ["train.batch_size=128", "train.grad_accum=4"])
    assert not any("area constraint" in line for line in official_differences(as_official))
    assert not any("area constraint" in line for line in official_differences(imagenet, world=4))
    assert not any("images per optimizer step" in line for line in lines)  # 128 x 2 = the official 256
    assert official_differences(load_config("synthetic_cpu")) == [
        "data.dataset = synthetic: the paper has no official recipe for it"]


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
