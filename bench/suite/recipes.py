"""The paper recipes (packaged configs) as the training and profiling sections run them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from satlib.config import Config, apply_mapping, load_config

from suite.harness import Suite


@dataclass(frozen=True)
class Recipe:
    """A paper setting: packaged config, the run's data view, and the real dataset's sizes."""

    name: str  # packaged config ("cub", "imagenet")
    view: str  # data view the training run reads
    train_images: int  # images of the real training split
    eval_images: int  # images of the real evaluation split


CUB = Recipe("cub", "cub_run", 5994, 5794)
IMAGENET = Recipe("imagenet", "imagenet_run", 1281167, 50000)


def recipe_config(suite: Suite, recipe: Recipe, root: Path, *, epochs: int, time_budget: float,
                  batch: int | None = None, accum: int = 1) -> Config:
    """The packaged recipe with this run's data, output, length, and (smoke) model overrides."""
    s = suite.sizes
    config = load_config(recipe.name)
    apply_mapping(config, {
        "data": {"dataset": "cub", "root": str(root), "img_size": s.img_size, "resize_size": s.resize_size},
        "model": {"pretrained": ""},
        "train": {"out": str(suite.work / f"run-{recipe.name}"), "epochs": epochs, "eval_every": 0,
                  "time_budget": float(max(time_budget, 1.0)), "compile": suite.compile_train,
                  "grad_accum": accum, "batch_size": batch or config.train.batch_size},
    }, "gpu_suite")
    for section, values in suite.sizes.recipe_overrides.items():
        apply_mapping(config, {section: values}, "gpu_suite --smoke")
    if not suite.numba_ready():  # score with label propagation rather than compile the trees inside the section
        config.eval.backend = "propagate"
    return config


def recipe_batch(suite: Suite, recipe: Recipe) -> int:
    s = suite.sizes
    given = s.cub_batch if recipe is CUB else s.imagenet_batch
    return given or load_config(recipe.name).train.batch_size
