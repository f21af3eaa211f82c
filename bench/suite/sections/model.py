"""Section "model": the training step of each model configuration (bench_model), FLOPs and ratios."""

from __future__ import annotations

import argparse
from dataclasses import replace

import torch
from torch.utils.flop_counter import FlopCounterMode

import bench_model
from _common import fmt, ratio
from suite.harness import Suite

MODEL_EAGER = (bench_model.Config("SAT explicit fp32", "sat", "explicit", "fp32"),
               bench_model.Config("SAT sdpa bf16", "sat", "sdpa", "bf16"),
               bench_model.Config("DeiT-S bf16 (timm)", "deit", "sdpa", "bf16"))
MODEL_COMPILED = bench_model.Config("SAT sdpa bf16 + compile", "sat", "sdpa", "bf16", compile=True)


def model_args(suite: Suite, batch: int, classes: int, **extra: str | int) -> argparse.Namespace:
    """bench_model's arguments for this suite's model, device and sizes."""
    s = suite.sizes
    argv = ["--model", s.model, "--device", str(suite.device), "--batch-size", str(batch),
            "--num-classes", str(classes), "--img-size", str(s.img_size), "--iters", str(s.model_iters),
            "--rounds", str(s.model_rounds), "--warmup", str(s.model_warmup), "--no-cpu-memory",
            "--compile-backend", s.compile_backend]
    for key, value in extra.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    return bench_model.parse_args(argv)


def gflop_per_image(args: argparse.Namespace, config: bench_model.Config) -> float:
    """Forward+backward GFLOP per image of one bench_model training step (FlopCounterMode)."""
    runner = bench_model.Runner(args, replace(config, compile=False))
    with FlopCounterMode(display=False) as counter:
        runner.step()
    return counter.get_total_flops() / args.batch_size / 1e9


def section_model(suite: Suite, results: dict) -> None:
    """Eager configurations side by side in alternating rounds, then the compiled one."""
    s = suite.sizes
    args = model_args(suite, s.model_batch, suite.sizes.cub_classes)
    results.update(model=s.model, batch=s.model_batch, img_size=s.img_size, classes=args.num_classes,
                   configs={})
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 for the explicit baseline
    try:
        results["gflop_per_image"] = {"sat": gflop_per_image(args, MODEL_EAGER[1]),
                                      "deit": gflop_per_image(args, MODEL_EAGER[2])}
        for configs in (MODEL_EAGER, (MODEL_COMPILED,)):
            measured = bench_model.measure(args, list(configs))
            for label, row in measured.items():
                flops = results["gflop_per_image"][row["kind"]]
                results["configs"][label] = {
                    "ms_per_step": row["ms_per_step"], "images_per_s": row["images_per_s"],
                    "peak_mb": row["peak_mb"], "tflops": flops * row["images_per_s"] / 1e3,
                    "ms_per_step_rounds": row["ms_per_step_rounds"]}
                print(f"   {label:<26} {row['images_per_s']:>8.0f} img/s  peak {fmt(row['peak_mb'], '.0f')} MiB",
                      flush=True)
            results["ratios"] = model_ratios(results["configs"])
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32


def model_ratios(configs: dict) -> dict:
    """Speed-up and memory of the bf16 paths over explicit fp32, and SAT's time over plain DeiT-S."""
    base = configs.get("SAT explicit fp32", {})
    out = {}
    for label, key in (("SAT sdpa bf16", "bf16"), ("SAT sdpa bf16 + compile", "bf16_compile")):
        row = configs.get(label, {})
        out[f"{key}_speedup_vs_fp32"] = ratio(row.get("images_per_s"), base.get("images_per_s"))
        out[f"{key}_memory_vs_fp32"] = ratio(row.get("peak_mb"), base.get("peak_mb"))
    deit = configs.get("DeiT-S bf16 (timm)", {})
    out["sat_time_vs_deit"] = ratio(configs.get("SAT sdpa bf16", {}).get("ms_per_step"), deit.get("ms_per_step"))
    out["sat_compile_time_vs_deit"] = ratio(configs.get("SAT sdpa bf16 + compile", {}).get("ms_per_step"),
                                            deit.get("ms_per_step"))
    return out
