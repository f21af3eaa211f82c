"""Section "model": SAT's training step in each attention path and precision (bench_model), FLOPs and ratios.

The 2 x 2 first, explicit / fused ("sdpa") attention x fp32 / bf16, alternating in rounds (fp32 is
full fp32: TF32 off); then the fused bf16 step compiled, under `train.deterministic`, and a plain timm
DeiT-S in bf16. A step is what train() takes: forward, SATLoss, backward and AdamW's step. Each has its
images/s and its peak memory above the resident weights.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import torch
from torch.utils.flop_counter import FlopCounterMode

import bench_model
from _common import fmt, ratio
from suite.harness import Suite

STEP = dict(optimizer=True)  # forward + backward + optimizer
PATHS, PRECISIONS = ("explicit", "sdpa"), ("fp32", "bf16")
MODEL_GRID = tuple(bench_model.Config(f"SAT {path} {dtype}", "sat", path, dtype, **STEP)
                   for dtype in PRECISIONS for path in PATHS)
MODEL_COMPILED = bench_model.Config("SAT sdpa bf16 + compile", "sat", "sdpa", "bf16", compile=True, **STEP)
MODEL_DETERMINISTIC = bench_model.Config("SAT sdpa bf16, deterministic", "sat", "sdpa", "bf16", deterministic=True,
                                         **STEP)
MODEL_DEIT = bench_model.Config("DeiT-S bf16 (timm)", "deit", "sdpa", "bf16", **STEP)
MODEL_EAGER = (*MODEL_GRID, MODEL_DETERMINISTIC, MODEL_DEIT)  # timed side by side; the compiled one after them


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
    """The eager configurations side by side in alternating rounds, then the compiled one (its compilation
    cannot take the eager figures with it); the 2 x 2 printed first."""
    s = suite.sizes
    args = model_args(suite, s.model_batch, suite.sizes.cub_classes)
    results.update(model=s.model, batch=s.model_batch, img_size=s.img_size, classes=args.num_classes,
                   step="forward + SATLoss + backward + AdamW", configs={})
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32
    try:
        results["gflop_per_image"] = {"sat": gflop_per_image(args, MODEL_GRID[1]),
                                      "deit": gflop_per_image(args, MODEL_DEIT)}
        for configs in (MODEL_EAGER, (MODEL_COMPILED,)):
            for label, row in bench_model.measure(args, list(configs)).items():
                flops = results["gflop_per_image"][row["kind"]]
                results["configs"][label] = {
                    "ms_per_step": row["ms_per_step"], "images_per_s": row["images_per_s"],
                    "peak_mb": row["peak_mb"], "tflops": flops * row["images_per_s"] / 1e3,
                    "ms_per_step_rounds": row["ms_per_step_rounds"]}
            if configs is MODEL_EAGER:
                print("\n".join("   " + line for line in grid_lines(results["configs"])), flush=True)
            results["ratios"] = model_ratios(results["configs"])
        for label in (MODEL_COMPILED.label, MODEL_DETERMINISTIC.label, MODEL_DEIT.label):
            row = results["configs"][label]
            print(f"   {label:<30} {row['images_per_s']:>8.0f} img/s  peak {fmt(row['peak_mb'], '.0f')} MiB",
                  flush=True)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32


def grid_lines(configs: dict) -> list[str]:
    """The 2 x 2 as text: a row per attention path, images/s and peak MiB per precision."""
    lines = [f"{'attention':<10}" + "".join(f"{d + ' img/s':>12}{d + ' peak MiB':>16}" for d in PRECISIONS)]
    for path in PATHS:
        cells = [configs.get(f"SAT {path} {dtype}", {}) for dtype in PRECISIONS]
        lines.append(f"{path:<10}" + "".join(f"{fmt(c.get('images_per_s'), '.0f'):>12}"
                                           f"{fmt(c.get('peak_mb'), '.0f'):>16}" for c in cells))
    return lines


def model_ratios(configs: dict) -> dict:
    """Each step of the 2 x 2 against explicit fp32; fused over explicit at each precision; compiling, the
    deterministic kernels' cost, and SAT's time over plain DeiT-S."""
    get = lambda label, key: configs.get(label, {}).get(key)  # noqa: E731
    base = "SAT explicit fp32"
    out = {}
    for label, key in (("SAT sdpa fp32", "sdpa_fp32"), ("SAT explicit bf16", "explicit_bf16"),
                       ("SAT sdpa bf16", "bf16"), (MODEL_COMPILED.label, "bf16_compile")):
        out[f"{key}_speedup_vs_fp32"] = ratio(get(label, "images_per_s"), get(base, "images_per_s"))
        out[f"{key}_memory_vs_fp32"] = ratio(get(label, "peak_mb"), get(base, "peak_mb"))
    for dtype in PRECISIONS:
        out[f"sdpa_over_explicit_{dtype}"] = ratio(get(f"SAT sdpa {dtype}", "images_per_s"),
                                                   get(f"SAT explicit {dtype}", "images_per_s"))
    out["compile_over_eager_bf16"] = ratio(get(MODEL_COMPILED.label, "images_per_s"),
                                           get("SAT sdpa bf16", "images_per_s"))
    out["deterministic_time_vs_default"] = ratio(get(MODEL_DETERMINISTIC.label, "ms_per_step"),
                                                 get("SAT sdpa bf16", "ms_per_step"))
    out["sat_time_vs_deit"] = ratio(get("SAT sdpa bf16", "ms_per_step"), get(MODEL_DEIT.label, "ms_per_step"))
    out["sat_compile_time_vs_deit"] = ratio(get(MODEL_COMPILED.label, "ms_per_step"),
                                            get(MODEL_DEIT.label, "ms_per_step"))
    return out
