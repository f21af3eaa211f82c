"""Section "profile": torch.profiler over a few training steps and one evaluator batch."""

from __future__ import annotations

import time

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from satlib.evaluation import LocalizationEvaluator
from satlib.train import train

import bench_eval
from suite.harness import StepClock, Suite
from suite.profile_analysis import save_trace, summarize_profile
from suite.recipes import CUB, recipe_batch, recipe_config
from suite.sections.data import data_views
from suite.sections.evaluator import configure_eval


def section_profile(suite: Suite, results: dict) -> None:
    results["eval_batch"] = profile_eval_batch(suite)
    results["train_step"] = profile_train_step(suite)
    for name in ("train_step", "eval_batch"):
        r = results[name]
        print(f"   {name}: {r['wall_ms']:.1f} ms wall, {r['kernel_ms']:.1f} ms of kernels, "
              f"{r['host_syncs']:.0f} host syncs, {r['launches']:.0f} launches", flush=True)


def profile_train_step(suite: Suite) -> dict:
    """Optimizer steps wait..wait+warmup+active of a CUB-recipe run, profiled inside satlib.train.train."""
    wait, warmup, active = suite.sizes.profile_schedule
    views = data_views(suite)
    config = recipe_config(suite, CUB, views["cub_run"], epochs=1, batch=recipe_batch(suite, CUB),
                           time_budget=0.5 * suite.remaining())
    summary: dict = {}
    clock = StepClock()

    def ready(prof) -> None:
        first, last = wait + warmup - 1, wait + warmup + active - 1
        wall = clock.times[last] - clock.times[first]
        summary.update(summarize_profile(prof.key_averages(), active, wall, suite.cuda),
                       batch=config.train.batch_size, trace=save_trace(prof, suite.out / "trace_train_step.json.gz"))

    schedule = torch.profiler.schedule(wait=wait, warmup=warmup, active=active, repeat=1)
    with torch.profiler.profile(activities=activities(suite), schedule=schedule, on_trace_ready=ready) as prof:
        clock.then = prof.step
        handle = register_optimizer_step_post_hook(clock)
        try:
            train(config, progress=False)
        finally:
            handle.remove()
    if not summary:
        raise RuntimeError(f"the run made {len(clock.times)} optimizer steps, fewer than the profile's "
                           f"{wait + warmup + active}")
    return summary


def profile_eval_batch(suite: Suite) -> dict:
    """One LocalizationEvaluator.update of an eval batch (logits, GT boxes on the device, as evaluate does)."""
    s = suite.sizes
    configure_eval(s)
    maps, boxes = bench_eval.synthetic_maps(s.eval_batch)
    maps, boxes = maps.to(suite.device), [b.to(suite.device) for b in boxes]
    logits = torch.randn(len(maps), s.cub_classes, device=suite.device)
    labels = torch.randint(0, s.cub_classes, (len(maps),), device=suite.device)
    evaluator = LocalizationEvaluator(thresholds=bench_eval.THRESHOLDS, image_size=bench_eval.SIZE, protocol="sat",
                                      backend="propagate")
    evaluator.update(maps, boxes, logits=logits, labels=labels)  # warm-up
    with torch.profiler.profile(activities=activities(suite)) as prof:
        suite.sync()
        start = time.perf_counter()
        evaluator.update(maps, boxes, logits=logits, labels=labels)
        suite.sync()
        wall = time.perf_counter() - start
    return {**summarize_profile(prof.key_averages(), 1, wall, suite.cuda), "maps": len(maps),
            "thresholds": len(bench_eval.THRESHOLDS), "trace": save_trace(prof, suite.out / "trace_eval_batch.json.gz")}


def activities(suite: Suite) -> list:
    kinds = [torch.profiler.ProfilerActivity.CPU]
    return kinds + [torch.profiler.ProfilerActivity.CUDA] if suite.cuda else kinds
