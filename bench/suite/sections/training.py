"""Sections "train_cub" and "train_imagenet": the recipe's training loop for a few hundred steps, timed.

Besides the loop's own rate: the model alone and the loader alone, the epoch boundary, a timed
evaluation, and the paper run projected from them.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from satlib.build import build_datasets, build_model, test_loader, train_loader
from satlib.config import Config, load_config
from satlib.data.cub import read_classes
from satlib.data.records import Problems
from satlib.evaluate import evaluate_model
from satlib.runtime import Dist
from satlib.train import train

import bench_data
import bench_model
from _common import ratio
from suite.harness import StepClock, Suite
from suite.recipes import CUB, Recipe, recipe_batch, recipe_config
from suite.sections.data import data_views
from suite.sections.model import MODEL_GRID, model_args


def section_train(recipe: Recipe) -> Callable[[Suite, dict], None]:
    def run(suite: Suite, results: dict) -> None:
        """The recipe's training loop for ~N steps, a timed evaluation, and the projected full run."""
        steps = suite.sizes.cub_steps if recipe is CUB else suite.sizes.imagenet_steps
        config = train_with_fallback(suite, recipe, results, steps)
        run_ = results["run"]
        if "step_s" in run_:
            results["images_per_s"] = results["images_per_step"] / run_["step_s"]
            results["gpu_busy_estimate"] = ratio(results["images_per_s"], results["model_only_images_per_s"])
            results["loader_keeps_up"] = results["loader_only_images_per_s"] >= results["model_only_images_per_s"]
            print(f"   {recipe.name}: {results['images_per_s']:.0f} images/s in the loop (model alone "
                  f"{results['model_only_images_per_s']:.0f}, loader alone {results['loader_only_images_per_s']:.0f})",
                  flush=True)
        eval_root = data_views(suite)["full"]
        results["evaluation"] = timed_evaluation(suite, config, eval_root, config.model.num_classes)
        results["projection"] = project(recipe, load_config(recipe.name), results)
    return run


def train_with_fallback(suite: Suite, recipe: Recipe, results: dict, steps: int) -> Config:
    """Train at the recipe's batch; on CUDA out-of-memory, the same batch as 2 or 4 accumulated shares."""
    views = data_views(suite)
    total = recipe_batch(suite, recipe)
    train_images = sum(1 for line in (views[recipe.view] / "train_test_split.txt").read_text().splitlines()
                       if line.split()[1] == "1")
    for accum in (1, 2, 4):
        micro = total // accum
        per_epoch = max(1, math.ceil(train_images // micro / accum))  # a shorter last step takes the rest
        epochs = max(2, math.ceil(steps / per_epoch))
        config = recipe_config(suite, recipe, views[recipe.view], epochs=epochs, batch=micro, accum=accum,
                               time_budget=suite.remaining())
        results.update(batch=total, micro_batch=micro, grad_accum=accum, steps_per_epoch=per_epoch,
                       images_per_step=micro * accum, classes=classes_of(views[recipe.view]))
        try:
            results["model_only_images_per_s"] = model_only_rate(suite, micro, results["classes"])
            results["loader_only_images_per_s"], results["workers"] = loader_only_rate(suite, config)
            config.train.time_budget = max(1.0, 0.6 * suite.remaining())  # leaves time for the evaluation
            results["run"] = timed_train(suite, config)
            return config
        except torch.cuda.OutOfMemoryError as err:
            results.setdefault("out_of_memory", []).append(f"batch {micro} x {accum}: {str(err)[:200]}")
            gc.collect()
            torch.cuda.empty_cache()
    raise RuntimeError(f"{recipe.name}: out of memory even at batch {total // 4} x 4")


def timed_train(suite: Suite, config: Config) -> dict:
    """satlib.train.train with a step clock: steps, step time, boundaries, peak memory, wall time."""
    clock, epoch_ends = StepClock(), []
    handle = register_optimizer_step_post_hook(clock)
    suite.reset_peak()
    start = time.perf_counter()
    try:
        train(config, progress=False, on_epoch=lambda record: epoch_ends.append(time.perf_counter()))
    finally:
        handle.remove()
    return {"steps": len(clock.times), "epochs": len(epoch_ends), "wall_s": time.perf_counter() - start,
            "first_step_s": clock.times[0] - start if clock.times else None, "peak_mb": suite.peak_mb(),
            **steady_steps(clock.times, epoch_ends, suite.sizes.warm_steps)}


def steady_steps(times: list[float], epoch_ends: list[float], warm: int) -> dict:
    """Step times inside epochs (after the run's first `warm` steps) and the extra time at epoch boundaries.

    Steps are assigned to epochs by the wall time each epoch's callback ran. `step_s` averages every
    interval inside an epoch (an epoch start's loader ramp included), `steady_step_s` only those in
    the second half of each epoch; intervals that cross a boundary (loader restart, checkpoint,
    closing evaluation) give `boundary_s`, the time a boundary adds beyond one step.
    """
    epoch_of = [sum(t > end for end in epoch_ends) for t in times]
    position = [epoch_of[:i].count(epoch_of[i]) for i in range(len(times))]  # index inside its epoch
    length = {e: epoch_of.count(e) for e in set(epoch_of)}
    inside = [(b - a, position[i] >= length[epoch_of[i]] / 2) for i, (a, b) in enumerate(zip(times, times[1:]), 1)
              if i >= warm and epoch_of[i] == epoch_of[i - 1]]
    if not inside:
        return {}
    step = sum(dt for dt, _ in inside) / len(inside)
    late = [dt for dt, second_half in inside if second_half] or [dt for dt, _ in inside]
    crossings = [b - a - step for i, (a, b) in enumerate(zip(times, times[1:]), 1) if epoch_of[i] != epoch_of[i - 1]]
    walls = [b - a for a, b in zip(epoch_ends, epoch_ends[1:])][:-1]  # the last one holds the evaluation
    return {"step_s": step, "steady_step_s": sum(late) / len(late), "intervals": len(inside),
            "boundary_s": statistics.median(crossings) if crossings else 0.0,
            "epoch_wall_s": statistics.median(walls) if walls else None}


def model_only_rate(suite: Suite, batch: int, classes: int) -> float:
    """Images/s of bench_model's SAT step (forward, backward, AdamW; inputs resident, no loader), in the
    precision the training loop uses (bf16 autocast on CUDA only)."""
    args = model_args(suite, batch, classes, iters=suite.sizes.probe_iters, warmup=2)
    config = replace(MODEL_GRID[1], dtype="bf16" if suite.cuda else "fp32", compile=suite.compile_train)
    runner = bench_model.Runner(args, config)
    for _ in range(args.warmup):
        runner.step()
    seconds, _ = runner.timed(args.iters)
    return batch / seconds


def loader_only_rate(suite: Suite, config: Config) -> tuple[float, int]:
    """Images/s of the run's own train loader alone (one epoch-sized pass), and its worker count."""
    train_set, _ = build_datasets(config, Path(config.data.root), test=False)
    loader = train_loader(train_set, config, Dist(device=suite.device))
    bench_data.images_per_second(loader, 2, suite.device)
    rate = bench_data.images_per_second(loader, min(len(loader), suite.sizes.loader_batches), suite.device)
    return rate, loader.num_workers if hasattr(loader, "num_workers") else loader.loader.num_workers


def timed_evaluation(suite: Suite, config: Config, root: Path, classes: int) -> dict:
    """evaluate_model over `root`'s whole test split as every evaluation of a run does (no CAM), and the extra
    of the CAM scoring the closing evaluation adds (the same images with and without, on an eighth of them)."""
    _, test_set = build_datasets(config, root, train=False)
    model = build_model(config, classes).to(suite.device)

    def seconds(dataset, cam: bool) -> float:
        loader = test_loader(dataset, config, Dist(device=suite.device))
        suite.sync()
        start = time.perf_counter()
        evaluate_model(model, loader, config, suite.device, cam=cam)
        suite.sync()
        return time.perf_counter() - start

    whole = seconds(test_set, cam=False)
    part = test_set.select(range(max(config.eval.batch_size, len(test_set) // 8)))
    cam_extra = max(0.0, seconds(part, cam=True) - seconds(part, cam=False)) / len(part)
    return {"images": len(test_set), "seconds": whole, "images_per_s": len(test_set) / whole,
            "cam_extra_s_per_image": cam_extra, "cam_images": len(part), "tencrop": config.eval.tencrop,
            "batch": config.eval.batch_size, "backend": config.eval.backend}


def classes_of(root: Path) -> int:
    return len(read_classes(root / "classes.txt", Problems()))


def project(recipe: Recipe, paper: Config, results: dict) -> dict:
    """The paper run on one GPU: its epochs at the measured rate, plus its evaluations (each without CAM scoring,
    which only the closing one adds).

    An epoch is the stand-in's measured epoch wall time when the stand-in has the real split's
    steps per epoch (CUB), else steps x the steady step time + one boundary (ImageNet).
    """
    run_, evaluation = results["run"], results.get("evaluation", {})
    if "step_s" not in run_:
        return {}
    steps = recipe.train_images // results["images_per_step"]
    if steps == results["steps_per_epoch"] and run_.get("epoch_wall_s"):
        epoch_s, basis = run_["epoch_wall_s"], "measured epoch wall time"
    else:
        epoch_s, basis = steps * run_["steady_step_s"] + run_["boundary_s"], "steps x steady step time + boundary"
    t = paper.train
    evaluations = sum(t.evaluates_after(epoch) for epoch in range(1, t.epochs + 1))
    eval_s = recipe.eval_images / evaluation["images_per_s"] if evaluation else None
    cam_s = recipe.eval_images * evaluation.get("cam_extra_s_per_image", 0.0) if evaluation else 0.0
    total = t.epochs * epoch_s + (evaluations * eval_s + cam_s if eval_s else 0.0)  # CAM: the closing one only
    return {"train_images": recipe.train_images, "steps_per_epoch": steps, "epoch_s": epoch_s, "basis": basis,
            "epochs": t.epochs, "evaluations": evaluations, "eval_images": recipe.eval_images,
            "eval_s": eval_s, "cam_s": cam_s, "total_s": total, "total_h": total / 3600}
