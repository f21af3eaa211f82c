"""One command for a lent GPU: every speed figure satlib needs, written to report.json and report.md as it goes.

Sections, in order (each with a time cap; a failing one records its error and the suite goes on):

    env             device, versions, measured bf16 matmul and copy ceilings
    model           DeiT-S 224, batch 128, forward+backward: explicit fp32 vs sdpa bf16 vs sdpa bf16 +
                    compile vs timm DeiT-S bf16; images/s, peak memory, TFLOP/s, ratios (bench_model)
    eval            CUB-sized evaluation (5,794 maps, 100 thresholds) batched on the device vs the
                    per-image loop on a CPU subset, scaled (bench_eval)
    data            a CUB-sized fake JPEG set (200 classes) and the loader's images/s (bench_data)
    train_cub       the CUB recipe (batch 256, bf16) through satlib.train.train for ~200 steps: loop,
                    loader-only and model-only images/s, seconds per epoch, a timed evaluation, and the
                    projected 30-epoch run
    train_imagenet  the ImageNet recipe's step rate (1000 classes, batch 512, or grad accumulation if
                    that does not fit) and its projected epoch
    profile         torch.profiler summaries of one training step and one evaluator batch

Run from the repository root (the repository on PYTHONPATH; needs torch, timm, einops, torchvision,
scipy, PIL; cv2 for the wsoleval loop, skipped without it):

    PYTHONPATH=. python bench/gpu_suite.py --out out/gpu                 # one GPU, <= 8 minutes
    python bench/gpu_suite.py --smoke --out out/suite-smoke              # CPU, tiny sizes, under a minute
    PYTHONPATH=. python bench/gpu_suite.py --sections model,eval --out out/gpu
"""

from __future__ import annotations

import argparse
import gc
import gzip
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import timm
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook
from torch.utils.flop_counter import FlopCounterMode

import satlib
from satlib.config import Config, apply_mapping, load_config
from satlib.data import build_dataset, build_loader, default_workers
from satlib.data.loader import cpu_count
from satlib.evaluation import LocalizationEvaluator
from satlib.train import Dist, build_datasets, build_model, evaluate, test_loader, train, train_loader

import bench_data
import bench_eval
import bench_model
from _common import fmt, make_fake_jpegs, write_cub_lists, write_json, write_text

REPO = Path(__file__).resolve().parent.parent
SECTIONS = ("env", "model", "eval", "data", "train_cub", "train_imagenet", "profile")
# Dense bf16 tensor-core peaks from the vendors' datasheets (TFLOP/s), matched in order against the name.
DATASHEET_BF16 = (("H100 PCIe", 756.0), ("H100", 989.0), ("H200", 989.0), ("GH200", 989.0), ("A100", 312.0),
                  ("L40S", 362.0), ("L4", 121.0), ("A10", 125.0))


@dataclass(frozen=True)
class Sizes:
    """Every size and cap the suite uses: `Sizes()` is the GPU run, `SMOKE` the CPU check."""

    model: str = "sat_deit_small_patch16_224"
    img_size: int = 224
    resize_size: int = 256
    model_batch: int = 128
    model_iters: int = 20
    model_rounds: int = 3
    model_warmup: int = 5
    compile_backend: str = "inductor"
    matmul_side: int = 8192
    copy_mib: int = 1024
    eval_maps: int = 5794
    eval_thresholds: int = 100
    eval_side: int = 224
    eval_loop_maps: int = 24
    eval_batch: int = 256
    image_wh: tuple[int, int] = (500, 375)
    jpeg_noise: float = 24.0
    cub_train: int = 5994
    cub_test: int = 5794
    cub_classes: int = 200
    imagenet_classes: int = 1000
    run_test: int = 64  # test images of each training run's own closing evaluation
    cub_steps: int = 200
    imagenet_steps: int = 60
    cub_batch: int | None = None  # None: the recipe's
    imagenet_batch: int | None = None
    probe_iters: int = 10
    loader_batches: int = 23  # one CUB epoch at batch 256: each pass starts as an epoch does
    warm_steps: int = 3  # optimizer steps of a run left out of its steady step time
    profile_schedule: tuple[int, int, int] = (2, 2, 3)  # wait, warmup, active optimizer steps
    recipe_overrides: dict = field(default_factory=dict)
    caps: dict = field(default_factory=lambda: {"env": 30, "model": 120, "eval": 75, "data": 45,
                                                "train_cub": 110, "train_imagenet": 70, "profile": 50})
    budget: float = 440.0  # seconds for all sections (imports, ~10 s, and the final report come on top)
    min_section: float = 10.0  # a section with less time left is skipped


SMOKE = Sizes(
    model="sat_tiny_convstem", img_size=32, resize_size=36, model_batch=4, model_iters=2, model_rounds=1,
    model_warmup=1, compile_backend="eager", matmul_side=256, copy_mib=16, eval_maps=8, eval_thresholds=5,
    eval_side=48, eval_loop_maps=2, eval_batch=4, image_wh=(64, 48), jpeg_noise=8.0, cub_train=48, cub_test=16,
    cub_classes=4, imagenet_classes=8, run_test=8, cub_steps=8, imagenet_steps=6, cub_batch=8, imagenet_batch=16,
    probe_iters=2, loader_batches=2, warm_steps=1, profile_schedule=(1, 1, 2),
    recipe_overrides={"model": {"name": "sat_tiny_convstem"}, "data": {"workers": 0}, "eval": {"batch_size": 16}},
    caps={name: 40 for name in SECTIONS}, budget=100.0, min_section=2.0)


@dataclass(frozen=True)
class Recipe:
    """A paper setting: packaged config, the run's data view, and the real dataset's sizes."""

    name: str  # packaged config ("cub", "imagenet")
    view: str  # data view the training run reads
    train_images: int  # images of the real training split
    eval_images: int  # images of the real evaluation split


CUB = Recipe("cub", "cub_run", 5994, 5794)
IMAGENET = Recipe("imagenet", "imagenet_run", 1281167, 50000)


class SectionTimeout(BaseException):
    """A section ran past its cap (BaseException, so no `except Exception` in the code under test eats it)."""


@dataclass
class Suite:
    """What the sections share: sizes, device, output folder, the report, the clock."""

    sizes: Sizes
    device: torch.device
    out: Path
    work: Path
    smoke: bool = False
    compile_train: bool = False
    report: dict = field(default_factory=dict)
    deadline: float = 0.0
    section_deadline: float = 0.0
    views: dict[str, Path] | None = None
    started: float = field(default_factory=time.perf_counter)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def remaining(self) -> float:
        """Seconds left in the running section."""
        return self.section_deadline - time.perf_counter()

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def reset_peak(self) -> None:
        if self.cuda:
            self.sync()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_mb(self) -> float | None:
        return torch.cuda.max_memory_allocated(self.device) / 2**20 if self.cuda else None


# ---------------------------------------------------------------------------------------------
# Running sections under caps, writing the report as we go
# ---------------------------------------------------------------------------------------------

@contextmanager
def time_cap(seconds: float):
    """Raise SectionTimeout in the main thread after `seconds` (SIGALRM; Unix)."""
    def fire(signum, frame):
        raise SectionTimeout(f"ran past its cap of {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_section(suite: Suite, name: str, run: Callable[[Suite, dict], None], cap: float) -> dict:
    """Run one section under min(cap, time left); its partial results survive an error or timeout."""
    left = suite.deadline - time.perf_counter()
    cap = min(cap, left)
    entry: dict = {"status": "running", "cap_s": round(cap, 1), "results": {}}
    suite.report["sections"][name] = entry
    if cap < suite.sizes.min_section:
        entry.update(status="skipped", error=f"only {max(left, 0):.0f} s of the suite's budget left")
        return entry
    print(f"\n== {name} (cap {cap:.0f} s)", flush=True)
    write_reports(suite)  # a run killed from outside still shows which section was running
    start = time.perf_counter()
    suite.section_deadline = start + cap
    try:
        with time_cap(cap):
            run(suite, entry["results"])
        entry["status"] = "ok"
    except SectionTimeout as err:
        entry.update(status="timeout", error=str(err))
    except Exception as err:  # noqa: BLE001 - the suite records any failure and goes on
        entry.update(status="error", error=f"{type(err).__name__}: {err}",
                     traceback=traceback.format_exc(limit=8)[-3000:])
    entry["seconds"] = round(time.perf_counter() - start, 2)
    if entry.get("error"):
        print(f"   {name}: {entry['status']}: {entry['error']}", flush=True)
    gc.collect()
    if suite.cuda:
        torch.cuda.empty_cache()
    return entry


def run_suite(suite: Suite, sections: list[tuple[str, Callable[[Suite, dict], None], float]]) -> dict:
    """Every section in order; report.json and report.md rewritten after each."""
    suite.report.setdefault("sections", {})
    suite.deadline = suite.started + suite.sizes.budget
    write_reports(suite)
    for name, run, cap in sections:
        run_section(suite, name, run, cap)
        suite.report["targets"] = targets(suite.report)
        suite.report["limits"] = limits(suite.report)
        suite.report["suite"]["elapsed_s"] = round(time.perf_counter() - suite.started, 1)
        write_reports(suite)
    return suite.report


def write_reports(suite: Suite) -> None:
    write_json(suite.out / "report.json", suite.report)
    write_text(suite.out / "report.md", render_markdown(suite.report))


# ---------------------------------------------------------------------------------------------
# Small measuring helpers
# ---------------------------------------------------------------------------------------------

def seconds_per_call(fn: Callable[[], object], reps: int, device: torch.device, warmup: int = 2) -> float:
    """Mean wall seconds of `fn()` over `reps` calls after `warmup` calls, synchronised on CUDA."""
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / reps


def matmul_tflops(device: torch.device, side: int, dtype: torch.dtype, reps: int = 10) -> float:
    """Achieved TFLOP/s of a side^3 matrix product on random data."""
    a = torch.randn(side, side, device=device, dtype=dtype)
    b = torch.randn(side, side, device=device, dtype=dtype)
    seconds = seconds_per_call(lambda: a @ b, reps, device, warmup=3)
    return 2 * side**3 / seconds / 1e12


def copy_tb_s(device: torch.device, mib: int, reps: int = 10) -> float:
    """Device-to-device copy bandwidth in TB/s, counting bytes read plus bytes written."""
    src = torch.rand(mib * 2**18, device=device)
    dst = torch.empty_like(src)
    seconds = seconds_per_call(lambda: dst.copy_(src), reps, device, warmup=3)
    return 2 * src.numel() * 4 / seconds / 1e12


def datasheet_bf16(name: str) -> float | None:
    return next((peak for key, peak in DATASHEET_BF16 if key in name), None)


def git_commit() -> str | None:
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


# ---------------------------------------------------------------------------------------------
# env
# ---------------------------------------------------------------------------------------------

def section_env(suite: Suite, results: dict) -> None:
    """Device, versions, and the two ceilings (bf16 matmul, device copy) measured on this card."""
    s = suite.sizes
    results.update(python=platform.python_version(), torch=torch.__version__, timm=timm.__version__,
                   satlib=satlib.__version__, cuda=torch.version.cuda, cpus=cpu_count(), git=git_commit())
    if suite.cuda:
        props = torch.cuda.get_device_properties(suite.device)
        results.update(device=props.name, capability=f"{props.major}.{props.minor}",
                       memory_gib=round(props.total_memory / 2**30, 1), multiprocessors=props.multi_processor_count,
                       datasheet_bf16_tflops=datasheet_bf16(props.name))
        results["matmul_bf16_tflops"] = matmul_tflops(suite.device, s.matmul_side, torch.bfloat16)
    else:
        results["device"] = f"CPU ({cpu_count()} cores, {torch.get_num_threads()} torch threads)"
        results["matmul_fp32_tflops"] = matmul_tflops(suite.device, s.matmul_side, torch.float32)
    results["copy_tb_s"] = copy_tb_s(suite.device, s.copy_mib)
    print(f"   {results['device']}, torch {torch.__version__}", flush=True)


# ---------------------------------------------------------------------------------------------
# model
# ---------------------------------------------------------------------------------------------

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


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


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


# ---------------------------------------------------------------------------------------------
# eval
# ---------------------------------------------------------------------------------------------

def configure_eval(sizes: Sizes) -> None:
    """Point bench_eval's module-level thresholds and image side at this run's sizes."""
    bench_eval.THRESHOLDS[:] = [i / sizes.eval_thresholds for i in range(sizes.eval_thresholds)]
    bench_eval.SIZE = sizes.eval_side


def section_eval(suite: Suite, results: dict) -> None:
    """Batched evaluator on the device vs the official-style per-image loop on a CPU subset."""
    s = suite.sizes
    configure_eval(s)
    maps, boxes = bench_eval.synthetic_maps(s.eval_maps)
    results.update(maps=s.eval_maps, thresholds=s.eval_thresholds, side=s.eval_side, batch=s.eval_batch,
                   loop_maps=s.eval_loop_maps, protocols={})
    for share, protocol in ((0.45, "sat"), (0.8, "wsoleval")):
        results["protocols"][protocol] = row = {}
        eval_protocol(suite, protocol, maps, boxes, share, row)


def eval_protocol(suite: Suite, protocol: str, maps: torch.Tensor, boxes: list, share: float, row: dict) -> None:
    """One protocol: the loop on `eval_loop_maps` maps, then as many maps as fit in `share` of the time left."""
    s = suite.sizes
    device, n_loop = suite.device.type, s.eval_loop_maps
    loop = (bench_eval.loop_sat if protocol == "sat" else bench_eval.loop_wsoleval)(maps[:n_loop], boxes[:n_loop])
    batched = lambda count: bench_eval.run_batched(maps[:count], boxes[:count], protocol, device,  # noqa: E731
                                                   s.eval_batch, backend="propagate")
    batched(min(8, len(maps)))  # warm-up: kernels, allocator
    probe_s, _ = batched(min(s.eval_batch, len(maps)))
    per_map = probe_s / min(s.eval_batch, len(maps))
    count = min(len(maps), max(min(s.eval_batch, len(maps)), int(share * suite.remaining() / per_map)))
    suite.reset_peak()
    seconds, metrics = batched(count)
    row.update(maps=count, batched_s=seconds, batched_ms_per_map=1e3 * seconds / count,
               batched_full_s=seconds / count * len(maps), peak_mb=suite.peak_mb(), maxboxacc=metrics["maxboxacc"])
    if loop is None:
        row["loop"] = "skipped: needs cv2"
        return
    _, subset = batched(n_loop)
    loop_per_map = loop[0] / n_loop
    row.update(loop_ms_per_map=1e3 * loop_per_map, loop_full_s=loop_per_map * len(maps),
               speedup=loop_per_map / (seconds / count),
               agrees_with_loop=bool(subset["maxboxacc"] == 100.0 * loop[1].max() / n_loop))
    print(f"   {protocol}: {row['batched_ms_per_map']:.2f} ms/map batched ({count} maps), loop "
          f"{row['loop_ms_per_map']:.1f} ms/map -> {row['speedup']:.0f}x", flush=True)


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------

def data_views(suite: Suite) -> dict[str, Path]:
    """The fake JPEG pool (made once) and the CUB-layout views of it that the sections read.

    full:         the CUB stand-in: cub_train train + cub_test test images, cub_classes classes
    cub_run:      its train split and the first run_test test images (a quick closing evaluation)
    imagenet_run: every pool image as train, imagenet_classes classes, run_test test images
    """
    if suite.views is not None:
        return suite.views
    s = suite.sizes
    start = time.perf_counter()
    count = s.cub_train + s.cub_test
    full = make_fake_jpegs(suite.work / "full", count, classes=s.cub_classes, test=s.cub_test,
                           size=s.image_wh, noise=s.jpeg_noise, processes=min(16, cpu_count()))
    paths = [line.split(" ", 1)[1].strip() for line in (full / "images.txt").read_text().splitlines()]
    box = [float(v) for v in (full / "bounding_boxes.txt").read_text().split("\n", 1)[0].split()[1:]]
    suite.views = {"full": full,
                   "cub_run": view(suite.work / "cub_run", full, paths[:s.cub_train + s.run_test],
                                   s.cub_classes, s.cub_train, box),
                   "imagenet_run": view(suite.work / "imagenet_run", full, paths + paths[-s.run_test:],
                                        s.imagenet_classes, count, box)}
    suite.report["data"] = {"images": count, "size": list(s.image_wh), "noise": s.jpeg_noise,
                            "mean_kb": jpeg_kb(full), "seconds": round(time.perf_counter() - start, 2)}
    return suite.views


def view(root: Path, pool: Path, paths: list[str], classes: int, train: int, box: list[float]) -> Path:
    """A CUB-layout folder over `pool`'s images: the first `train` of `paths` train, the rest test."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "images").symlink_to((pool / "images").resolve(), target_is_directory=True)
    labels = [i % classes for i in range(len(paths))]
    return write_cub_lists(root, paths, labels, [i < train for i in range(len(paths))], [box] * len(paths),
                           classes)


def jpeg_kb(root: Path, sample: int = 200) -> float:
    files = sorted((root / "images").rglob("*.jpg"))[:sample]
    return sum(f.stat().st_size for f in files) / max(len(files), 1) / 1e3


def loader_configs(suite: Suite) -> list[tuple[int, str | None]]:
    """(workers, decode device): the default loader, all cores, and nvJPEG decoding on the GPU."""
    if not suite.cuda:
        return [(0, None), (1, None)]
    configs = [(default_workers(), None), (max(1, cpu_count() - 1), None), (default_workers(), "cuda")]
    return list(dict.fromkeys(configs))


def section_data(suite: Suite, results: dict) -> None:
    """Loader images/s of the CUB stand-in's train split (train transforms), one epoch-sized run each."""
    s = suite.sizes
    views = data_views(suite)
    results.update(suite.report["data"], loaders=[])
    dataset = build_dataset("cub", views["full"], "train", img_size=s.img_size, resize_size=s.resize_size)
    batch = s.cub_batch or load_config(CUB.name).train.batch_size
    for workers, decode in loader_configs(suite):
        loader = build_loader(dataset, batch, train=True, workers=workers, decode_device=decode)
        bench_data.images_per_second(loader, 2, suite.device)  # start the workers
        rate = bench_data.images_per_second(loader, s.loader_batches, suite.device)
        results["loaders"].append({"workers": workers, "decode": decode or "cpu", "batch": batch,
                                   "batches": s.loader_batches, "images_per_s": rate})
        print(f"   loader: {workers} workers, decode {decode or 'cpu'}: {rate:.0f} images/s", flush=True)
        del loader


# ---------------------------------------------------------------------------------------------
# train_cub, train_imagenet
# ---------------------------------------------------------------------------------------------

class StepClock:
    """An optimizer step post-hook: the wall time after every optimizer step of a run."""

    def __init__(self, then: Callable[[], None] | None = None) -> None:
        self.times: list[float] = []
        self.then = then

    def __call__(self, optimizer, args, kwargs) -> None:
        self.times.append(time.perf_counter())
        if self.then is not None:
            self.then()


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
    return config


def recipe_batch(suite: Suite, recipe: Recipe) -> int:
    s = suite.sizes
    given = s.cub_batch if recipe is CUB else s.imagenet_batch
    return given or load_config(recipe.name).train.batch_size


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


def model_only_rate(suite: Suite, batch: int, classes: int) -> float:
    """Images/s of bench_model's SAT step (forward+backward, inputs resident, no loader), in the
    precision the training loop uses (bf16 autocast on CUDA only)."""
    args = model_args(suite, batch, classes, iters=suite.sizes.probe_iters, warmup=2)
    config = replace(MODEL_EAGER[1], dtype="bf16" if suite.cuda else "fp32", compile=suite.compile_train)
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
    """satlib.train.evaluate (with CAM, as the closing evaluation) over `root`'s whole test split."""
    _, test_set = build_datasets(config, root, train=False)
    model = build_model(config, classes).to(suite.device)
    loader = test_loader(test_set, config, Dist(device=suite.device))
    suite.sync()
    start = time.perf_counter()
    evaluate(model, loader, config, suite.device, cam=True)
    suite.sync()
    seconds = time.perf_counter() - start
    return {"images": len(test_set), "seconds": seconds, "images_per_s": len(test_set) / seconds,
            "tencrop": config.eval.tencrop, "batch": config.eval.batch_size}


def train_with_fallback(suite: Suite, recipe: Recipe, results: dict, steps: int) -> Config:
    """Train at the recipe's batch; on CUDA out-of-memory, the same batch as 2 or 4 accumulated shares."""
    views = data_views(suite)
    total = recipe_batch(suite, recipe)
    train_images = sum(1 for line in (views[recipe.view] / "train_test_split.txt").read_text().splitlines()
                       if line.split()[1] == "1")
    for accum in (1, 2, 4):
        micro = total // accum
        per_epoch = max(1, train_images // micro // accum)
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


def classes_of(root: Path) -> int:
    return len((root / "classes.txt").read_text().splitlines())


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


def project(recipe: Recipe, paper: Config, results: dict) -> dict:
    """The paper run on one GPU: its epochs at the measured rate, plus its evaluations.

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
    evaluations = t.epochs // t.eval_every if t.eval_every else 1
    eval_s = recipe.eval_images / evaluation["images_per_s"] if evaluation else None
    total = t.epochs * epoch_s + (evaluations * eval_s if eval_s else 0.0)
    return {"train_images": recipe.train_images, "steps_per_epoch": steps, "epoch_s": epoch_s, "basis": basis,
            "epochs": t.epochs, "evaluations": evaluations, "eval_images": recipe.eval_images,
            "eval_s": eval_s, "total_s": total, "total_h": total / 3600}


# ---------------------------------------------------------------------------------------------
# profile
# ---------------------------------------------------------------------------------------------

# CPU-side events that block the host until the device catches up (or mark an op that does).
SYNC_EVENTS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize",
               "aten::_local_scalar_dense", "aten::item", "aten::equal", "aten::nonzero")
LAUNCH_EVENTS = ("cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx")
KERNEL_KINDS = (("attention", ("flash", "fmha", "attention")),
                ("matmul", ("gemm", "xmma", "nvjet", "cutlass", "matmul", "cublas")),
                ("copy", ("memcpy", "memset")),
                ("norm/softmax", ("layer_norm", "layernorm", "softmax", "batch_norm")),
                ("scatter/gather/reduce", ("scatter", "gather", "reduce", "index", "pool", "sort", "scan")),
                ("elementwise", ("elementwise", "vectorized", "unrolled", "pointwise", "triton")))


def _us(event, name: str) -> float:
    """An event's time field in microseconds (device_* names, or the older cuda_* ones)."""
    for attr in (name, name.replace("device", "cuda")):
        value = getattr(event, attr, None)
        if value is not None:
            return float(value)
    return 0.0


def kernel_kind(name: str) -> str:
    low = name.lower()
    return next((kind for kind, keys in KERNEL_KINDS if any(k in low for k in keys)), "other")


def summarize_profile(events, steps: int, wall_s: float, cuda: bool, top: int = 12) -> dict:
    """Per-step figures of a profile: top ops and kernels, kernel-time shares, host syncs, launches."""
    rows = [{"name": e.key, "calls": e.count, "self_device_us": _us(e, "self_device_time_total"),
             "self_cpu_us": float(e.self_cpu_time_total), "kernel": str(getattr(e, "device_type", "")).endswith("CUDA")}
            for e in events]
    kernels = [r for r in rows if r["kernel"]]
    kernel_us = sum(r["self_device_us"] for r in kernels)
    key = "self_device_us" if cuda else "self_cpu_us"
    ops = sorted((r for r in rows if not r["kernel"] and r["name"].startswith("aten::")), key=lambda r: -r[key])
    shares: dict[str, float] = {}
    for r in kernels:
        share = r["self_device_us"] / kernel_us if kernel_us else 0.0
        shares[kernel_kind(r["name"])] = shares.get(kernel_kind(r["name"]), 0.0) + share
    per_step = lambda r: {"name": r["name"][:120], "calls": r["calls"] / steps,  # noqa: E731
                          "self_device_ms": r["self_device_us"] / 1e3 / steps,
                          "self_cpu_ms": r["self_cpu_us"] / 1e3 / steps}
    count = lambda names: sum(r["calls"] for r in rows if r["name"] in names) / steps  # noqa: E731
    return {"steps": steps, "wall_ms": 1e3 * wall_s / steps, "kernel_ms": kernel_us / 1e3 / steps,
            "gpu_busy": kernel_us / 1e6 / wall_s if cuda and kernels and wall_s > 0 else None,
            "kernels_recorded": len(kernels),  # 0 on CUDA: the profiler saw no kernels (CUPTI missing?)
            "kernel_share": dict(sorted(shares.items(), key=lambda kv: -kv[1])),
            "maybe_sync_ops": {r["name"]: r["calls"] / steps for r in rows if r["name"] in SYNC_EVENTS},
            "host_syncs": count({"cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize"}),
            "pageable_copies": sum(r["calls"] for r in kernels if "Pageable" in r["name"]) / steps,
            "launches": count(LAUNCH_EVENTS),
            "top_ops": [per_step(r) for r in ops[:top]],
            "top_kernels": [per_step(r) for r in sorted(kernels, key=lambda r: -r["self_device_us"])[:top // 2]]}


def save_trace(prof, path: Path, limit_mb: float = 15.0) -> str | None:
    """The profile as a gzipped Chrome trace next to the report (dropped over `limit_mb`)."""
    raw = path.with_suffix("")
    prof.export_chrome_trace(str(raw))
    with open(raw, "rb") as src, gzip.open(path, "wb") as dst:
        shutil.copyfileobj(src, dst)
    raw.unlink()
    if path.stat().st_size > limit_mb * 2**20:
        path.unlink()
        return None
    return path.name


def activities(suite: Suite) -> list:
    kinds = [torch.profiler.ProfilerActivity.CPU]
    return kinds + [torch.profiler.ProfilerActivity.CUDA] if suite.cuda else kinds


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


def section_profile(suite: Suite, results: dict) -> None:
    results["eval_batch"] = profile_eval_batch(suite)
    results["train_step"] = profile_train_step(suite)
    for name in ("train_step", "eval_batch"):
        r = results[name]
        print(f"   {name}: {r['wall_ms']:.1f} ms wall, {r['kernel_ms']:.1f} ms of kernels, "
              f"{r['host_syncs']:.0f} host syncs, {r['launches']:.0f} launches", flush=True)


# ---------------------------------------------------------------------------------------------
# Targets, limits, report
# ---------------------------------------------------------------------------------------------

def results_of(report: dict, name: str) -> dict:
    return report.get("sections", {}).get(name, {}).get("results", {})


def targets(report: dict) -> list[dict]:
    """Each target of issue 8 with its measured value (None when its section did not produce it)."""
    model, evaluation, cub = (results_of(report, n) for n in ("model", "eval", "train_cub"))
    ratios, configs = model.get("ratios", {}), model.get("configs", {})
    sat_rates = [row["images_per_s"] for label, row in configs.items() if label.startswith("SAT sdpa")]
    loader = ratio(cub.get("loader_only_images_per_s"), cub.get("model_only_images_per_s"))
    rows = [
        ("bf16 + compile images/s over explicit fp32", ratios.get("bf16_compile_speedup_vs_fp32"), ">= 3", 3, 1),
        ("bf16 + compile peak memory over explicit fp32", ratios.get("bf16_compile_memory_vs_fp32"), "<= 0.6", 0.6, -1),
        ("SAT bf16 step time over timm DeiT-S bf16", ratios.get("sat_time_vs_deit"), "<= 1.10", 1.10, -1),
        ("SAT DeiT-S images/s (best SAT path)", max(sat_rates) if sat_rates else None, ">= 5000 on an H100", 5000, 1),
        ("evaluator speed-up over the per-image loop (sat)",
         evaluation.get("protocols", {}).get("sat", {}).get("speedup"), ">= 100", 100, 1),
        ("loader images/s over model images/s (CUB)", loader, ">= 1", 1, 1),
    ]
    return [{"target": name, "value": value, "goal": goal,
             "met": None if value is None else bool((value - bound) * sign >= 0)}
            for name, value, goal, bound, sign in rows]


def limits(report: dict) -> list[str]:
    """For every missed target, what limits it, read off the measurements and the profile."""
    missed = {t["target"] for t in report.get("targets", []) if t["met"] is False}
    env, model, cub = (results_of(report, n) for n in ("env", "model", "train_cub"))
    profile = results_of(report, "profile")
    notes = []
    step = profile.get("train_step")
    if missed & {"bf16 + compile images/s over explicit fp32", "SAT DeiT-S images/s (best SAT path)",
                 "SAT bf16 step time over timm DeiT-S bf16"} and model.get("configs"):
        best = max((r for label, r in model["configs"].items() if label.startswith("SAT")), key=lambda r: r["tflops"])
        ceiling = env.get("matmul_bf16_tflops")
        text = f"Model: the best SAT path reaches {best['tflops']:.3g} TFLOP/s"
        if ceiling:
            text += f", {100 * best['tflops'] / ceiling:.0f}% of the measured bf16 matmul ceiling ({ceiling:.0f})"
        if step:
            text += (f". Training-step profile: kernels fill {fmt(pct(step['gpu_busy']), '.0f')}% of the step's "
                     f"wall time; kernel time by kind: {shares_text(step['kernel_share'])}; per step "
                     f"{step['host_syncs']:.0f} host syncs, {step['pageable_copies']:.0f} pageable copies, "
                     f"{step['launches']:.0f} kernel launches; top op {top_op(step)}")
        flops = model.get("gflop_per_image", {})
        if flops.get("deit"):
            text += (f". SAT costs {flops['sat']:.1f} GFLOP per image forward+backward, "
                     f"{100 * (flops['sat'] / flops['deit'] - 1):+.0f}% over plain DeiT-S (conv head, loc token)")
        notes.append(text + ".")
    if "bf16 + compile peak memory over explicit fp32" in missed and model.get("configs"):
        peaks = ", ".join(f"{label} {fmt(r['peak_mb'], '.0f')} MiB" for label, r in model["configs"].items())
        notes.append(f"Memory: peak above the resident weights per configuration: {peaks}.")
    batch = profile.get("eval_batch")
    if "evaluator speed-up over the per-image loop (sat)" in missed and batch:
        notes.append(f"Evaluator: one batch of {batch['maps']} maps x {batch['thresholds']} thresholds takes "
                     f"{batch['wall_ms']:.0f} ms, kernels {batch['kernel_ms']:.0f} ms "
                     f"({shares_text(batch['kernel_share'])}); {batch['host_syncs']:.0f} host syncs and "
                     f"{batch['launches']:.0f} launches per batch; top op {top_op(batch)}.")
    if "loader images/s over model images/s (CUB)" in missed and cub:
        notes.append(f"Loader: the CUB train loader alone gives {cub['loader_only_images_per_s']:.0f} images/s with "
                     f"{cub.get('workers')} workers, the model alone {cub['model_only_images_per_s']:.0f}; the loop "
                     f"runs at {fmt(cub.get('images_per_s'), '.0f')} images/s, so the input pipeline (JPEG decode + "
                     f"resize on the CPU workers) limits training; see the data section for more workers and "
                     f"nvJPEG decoding.")
    return notes


def pct(value: float | None) -> float | None:
    return None if value is None else 100 * value


def shares_text(shares: dict) -> str:
    return ", ".join(f"{kind} {100 * share:.0f}%" for kind, share in list(shares.items())[:5]) or "no kernels"


def top_op(summary: dict) -> str:
    if not summary.get("top_ops"):
        return "n/a"
    op = summary["top_ops"][0]
    return f"{op['name']} ({op['self_device_ms'] or op['self_cpu_ms']:.1f} ms, {op['calls']:.0f} calls)"


def table(header: list[str], rows: list[list]) -> list[str]:
    cells = lambda row: "| " + " | ".join(str(c) for c in row) + " |"  # noqa: E731
    return [cells(header), "|" + "---|" * len(header), *(cells(r) for r in rows)]


def render_markdown(report: dict) -> str:
    """report.md: header, targets, projections, one part per section, limits."""
    suite, sections = report.get("suite", {}), report.get("sections", {})
    env = results_of(report, "env")
    lines = ["# GPU suite report", "",
             f"- device: {env.get('device', 'n/a')}; torch {torch.__version__}, timm {timm.__version__}, "
             f"satlib {satlib.__version__}, commit {env.get('git') or 'n/a'}",
             f"- command: `{suite.get('command', '')}`",
             f"- started {suite.get('started', '')}, {suite.get('elapsed_s', 0):.0f} s so far"
             f"{' (smoke: tiny sizes on the CPU, figures are not measurements)' if suite.get('smoke') else ''}", ""]
    lines += ["## Targets", ""] + table(["target", "value", "goal", "met"], [
        [t["target"], fmt(t["value"], ".2f"), t["goal"], {True: "yes", False: "**no**", None: "n/a"}[t["met"]]]
        for t in report.get("targets", [])]) + [""]
    lines += ["## Projected time to reproduce each paper number on one GPU", ""] + table(
        ["setting", "steps/epoch x epochs", "epoch", "evaluations", "total"],
        [[name, f"{p['steps_per_epoch']} x {p['epochs']}", f"{p['epoch_s']:.0f} s",
          f"{p['evaluations']} x {fmt(p['eval_s'], '.0f')} s", f"{p['total_s'] / 60:.1f} min"]
         for name, p in ((n, results_of(report, s).get("projection")) for n, s in
                         (("CUB, 30 epochs", "train_cub"), ("ImageNet, 1 epoch", "train_imagenet"))) if p]) + [""]
    lines += ["## Sections", ""] + table(["section", "status", "seconds", "cap"], [
        [name, e["status"], fmt(e.get("seconds"), ".0f"), fmt(e.get("cap_s"), ".0f")] for name, e in sections.items()])
    for name, entry in sections.items():
        lines += ["", f"### {name}", ""]
        if entry.get("error"):
            lines += [f"**{entry['status']}**: {entry['error']}", ""]
        lines += RENDER.get(name, lambda r: [])(entry.get("results", {}))
    if report.get("limits"):
        lines += ["", "## What limits the missed targets", ""] + [f"- {note}" for note in report["limits"]]
    return "\n".join(lines) + "\n"


def render_env(r: dict) -> list[str]:
    keys = ("device", "capability", "memory_gib", "multiprocessors", "cpus", "python", "torch", "cuda", "timm",
            "datasheet_bf16_tflops", "matmul_bf16_tflops", "matmul_fp32_tflops", "copy_tb_s")
    return table(["", "value"], [[k, fmt(r[k], ".3g") if isinstance(r[k], float) else r[k]] for k in keys if k in r])


def render_model(r: dict) -> list[str]:
    if not r.get("configs"):
        return []
    lines = [f"{r['model']}, batch {r['batch']}, {r['img_size']} px, {r['classes']} classes; forward+backward "
             f"GFLOP/image: SAT {r['gflop_per_image']['sat']:.2f}, DeiT {r['gflop_per_image']['deit']:.2f}", ""]
    lines += table(["configuration", "ms/step", "images/s", "TFLOP/s", "peak MiB"], [
        [label, f"{c['ms_per_step']:.1f}", f"{c['images_per_s']:.0f}", f"{c['tflops']:.3g}", fmt(c["peak_mb"], ".0f")]
        for label, c in r["configs"].items()])
    return lines + [""] + [f"- {k}: {fmt(v, '.2f')}" for k, v in r.get("ratios", {}).items()]


def render_eval(r: dict) -> list[str]:
    rows = [[p, x.get("maps"), fmt(x.get("batched_ms_per_map"), ".3f"), fmt(x.get("batched_full_s"), ".1f"),
             fmt(x.get("loop_ms_per_map"), ".1f"), fmt(x.get("loop_full_s"), ".0f"), fmt(x.get("speedup"), ".0f"),
             fmt(x.get("peak_mb"), ".0f"), x.get("agrees_with_loop", x.get("loop", "n/a"))]
            for p, x in r.get("protocols", {}).items() if x]
    head = [f"{r.get('maps')} maps 14x14 -> {r.get('side')}, {r.get('thresholds')} thresholds, batch {r.get('batch')}; "
            f"loop timed on {r.get('loop_maps')} maps on the CPU and scaled", ""] if r else []
    return head + table(["protocol", "maps run", "batched ms/map", "batched, full set s", "loop ms/map",
                         "loop, full set s", "speed-up", "peak MiB", "agrees with loop"], rows)


def render_data(r: dict) -> list[str]:
    head = [f"{r.get('images')} JPEGs {r.get('size')}, ~{fmt(r.get('mean_kb'), '.0f')} KB, made in "
            f"{fmt(r.get('seconds'), '.1f')} s", ""] if r else []
    return head + table(["workers", "decode", "batch", "images/s"], [
        [x["workers"], x["decode"], x["batch"], f"{x['images_per_s']:.0f}"] for x in r.get("loaders", [])])


def render_train(r: dict) -> list[str]:
    run_, ev, p = r.get("run", {}), r.get("evaluation", {}), r.get("projection", {})
    rows = [["batch (micro x accumulation)", f"{r.get('micro_batch')} x {r.get('grad_accum')}"],
            ["classes", r.get("classes")], ["steps run (epochs)", f"{run_.get('steps')} ({run_.get('epochs')})"],
            ["images/s in the training loop", fmt(r.get("images_per_s"), ".0f")],
            ["images/s, model alone (no loader)", fmt(r.get("model_only_images_per_s"), ".0f")],
            ["images/s, loader alone", f"{fmt(r.get('loader_only_images_per_s'), '.0f')} ({r.get('workers')} workers)"],
            ["loop / model alone", fmt(r.get("gpu_busy_estimate"), ".2f")],
            ["step time (all / second half of each epoch)",
             f"{fmt(1e3 * run_['step_s'] if 'step_s' in run_ else None, '.1f')} / "
             f"{fmt(1e3 * run_['steady_step_s'] if 'step_s' in run_ else None, '.1f')} ms"],
            ["epoch boundary (checkpoint, loader restart)", fmt(run_.get("boundary_s"), ".2f") + " s"],
            ["epoch wall time (this stand-in)", fmt(run_.get("epoch_wall_s"), ".1f") + " s"],
            ["start to first step (data, model, compile)", fmt(run_.get("first_step_s"), ".1f") + " s"],
            ["peak memory", fmt(run_.get("peak_mb"), ".0f") + " MiB"],
            ["evaluation", f"{fmt(ev.get('images_per_s'), '.0f')} images/s over {ev.get('images')} images"
                           f" (ten-crop {ev.get('tencrop')}, batch {ev.get('batch')})"]]
    if p:
        rows += [["projected epoch", f"{p['steps_per_epoch']} steps, {p['epoch_s']:.0f} s ({p['basis']})"],
                 ["projected full run", f"{p['epochs']} epochs + {p['evaluations']} evaluations of "
                                        f"{p['eval_images']} images = {p['total_s'] / 60:.1f} min"]]
    return table(["figure", "value"], rows) if r else []


def render_profile(r: dict) -> list[str]:
    lines = []
    for name in ("train_step", "eval_batch"):
        x = r.get(name)
        if not x:
            continue
        lines += [f"{name}: {x['wall_ms']:.1f} ms wall per step under the profiler, {x['kernel_ms']:.1f} ms of "
                  f"kernels (busy {fmt(pct(x['gpu_busy']), '.0f')}%); {shares_text(x['kernel_share'])}; per step "
                  f"{x['host_syncs']:.0f} host syncs, {x['pageable_copies']:.0f} pageable copies, "
                  f"{x['launches']:.0f} launches; ops that sync when on the GPU {x['maybe_sync_ops']}; "
                  f"trace {x.get('trace')}", ""]
        lines += table(["op", "calls", "self device ms", "self CPU ms"], [
            [f"`{o['name']}`", f"{o['calls']:.0f}", f"{o['self_device_ms']:.2f}", f"{o['self_cpu_ms']:.2f}"]
            for o in x["top_ops"]]) + [""]
    return lines


RENDER = {"env": render_env, "model": render_model, "eval": render_eval, "data": render_data,
          "train_cub": render_train, "train_imagenet": render_train, "profile": render_profile}


def headline(name: str, r: dict) -> str:
    """One line per section for the final summary."""
    if name == "env" and r:
        return f"{r.get('device')}, copy {fmt(r.get('copy_tb_s'), '.2f')} TB/s"
    if name == "model" and r.get("configs"):
        return ", ".join(f"{label} {c['images_per_s']:.0f}/s" for label, c in r["configs"].items())
    if name == "eval" and r.get("protocols"):
        return ", ".join(f"{p} {fmt(x.get('speedup'), '.0f')}x" for p, x in r["protocols"].items() if x)
    if name == "data" and r.get("loaders"):
        return ", ".join(f"{x['workers']}w/{x['decode']} {x['images_per_s']:.0f}/s" for x in r["loaders"])
    if name.startswith("train") and r.get("run"):
        p = r.get("projection", {})
        return (f"{fmt(r.get('images_per_s'), '.0f')} img/s in loop, "
                f"model {fmt(r.get('model_only_images_per_s'), '.0f')}, "
                f"loader {fmt(r.get('loader_only_images_per_s'), '.0f')}; full run {fmt(p.get('total_h'), '.2f')} h")
    if name == "profile" and r:
        return ", ".join(f"{k} busy {fmt(pct(v.get('gpu_busy')), '.0f')}% syncs {v['host_syncs']:.0f}"
                         for k, v in r.items())
    return ""


def print_summary(report: dict) -> None:
    print("\n== summary")
    for name, e in report["sections"].items():
        print(f"{name:<15} {e['status']:<8} {fmt(e.get('seconds'), '6.0f')} s  {headline(name, e.get('results', {}))}")
    print()
    for t in report.get("targets", []):
        met = {True: "met", False: "MISSED", None: "n/a"}[t["met"]]
        print(f"{t['target']:<50} {fmt(t['value'], '10.2f')}  {t['goal']:<20} {met}")
    for note in report.get("limits", []):
        print(f"- {note}")


SECTION_RUNS: dict[str, Callable[[Suite, dict], None]] = {
    "env": section_env, "model": section_model, "eval": section_eval, "data": section_data,
    "train_cub": section_train(CUB), "train_imagenet": section_train(IMAGENET), "profile": section_profile}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for report.json, report.md and traces")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU (checks the suite, not the speed)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    parser.add_argument("--budget", type=float, default=None, help="seconds for all sections (default 440; smoke 100)")
    parser.add_argument("--compile-train", action="store_true", help="train.compile=true in the training sections")
    parser.add_argument("--keep-work", action="store_true", help="keep the generated data and checkpoints")
    args = parser.parse_args(argv)
    args.sections = [name.strip() for name in args.sections.split(",") if name.strip()]
    unknown = [name for name in args.sections if name not in SECTIONS]
    if unknown:
        parser.error(f"--sections: unknown {unknown}; choose from {', '.join(SECTIONS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    sizes = SMOKE if args.smoke else Sizes()
    sizes = replace(sizes, budget=args.budget) if args.budget else sizes
    if not args.smoke and not torch.cuda.is_available():
        print("gpu_suite: no CUDA device here; --smoke runs the same sections on the CPU at tiny sizes",
              file=sys.stderr)
        return 2
    if args.smoke:
        torch.set_num_threads(1)  # a shared 2-core machine: more threads only oversubscribe
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gpu_suite-"))
    suite = Suite(sizes=sizes, device=torch.device("cpu" if args.smoke else "cuda"), out=args.out, work=work,
                  smoke=args.smoke, compile_train=args.compile_train)
    suite.report = {"suite": {"command": " ".join(["python bench/gpu_suite.py", *argv]), "smoke": args.smoke,
                              "compile_train": args.compile_train, "sections": args.sections, "budget_s": sizes.budget,
                              "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}, "sections": {}}
    try:
        run_suite(suite, [(name, SECTION_RUNS[name], sizes.caps[name]) for name in args.sections])
    finally:
        if not args.keep_work:
            shutil.rmtree(work, ignore_errors=True)
    print_summary(suite.report)
    return 0 if all(e["status"] == "ok" for e in suite.report["sections"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
