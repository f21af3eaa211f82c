"""The paper's recipes: configs/cub.yaml and imagenet.yaml are the official ones; what differs is listed.
(A GPU run's estimated cost: bench/cost.py, tested in tests/bench/test_cost.py.)"""


import pytest

from satlib.config import load_config
from satlib.recipes import IMPLEMENTATION_DIFFERENCES, OFFICIAL, official_differences


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


def test_every_departure_from_the_recipe_is_named():
    config = load_config("cub", ["train.max_steps=2", "train.epochs=2", "train.eval_every=1",
                                 "train.constraint_warmup_epochs=2", "train.time_budget=240",
                                 "train.batch_size=128", "train.grad_accum=2",
                                 "eval.tencrop=false", "model.name=sat_tiny_convstem"])
    lines = official_differences(config)
    for expected in ("train.epochs = 2 (official: 30)", "train.constraint_warmup_epochs = 2.0 (official: 0.0)",
                     "train.time_budget = 240.0 (official: 0.0)", "eval.tencrop = False (official: True)",
                     "model.name = 'sat_tiny_convstem' (official: 'sat_deit_small_patch16_224')",
                     "evaluated after epochs 2 (official: 26-30)", "capped: train.max_steps=2"):
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
