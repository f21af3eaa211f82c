"""What every section shares: the sizes, the `Suite` state, running sections under time caps, timers.

A section is a function `run(suite, results)` that fills `results` as it goes; `run_suite` runs each
under min(its cap, the budget left), records an error or timeout with whatever results came before,
and rewrites report.json and report.md after every section.
"""

from __future__ import annotations

import gc
import signal
import subprocess
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from _common import write_json, write_text
from suite.report import limits, render_markdown, targets

REPO = Path(__file__).resolve().parents[2]
# The most valuable figures first: a run cut short still has the model table and the evaluator.
SECTIONS = ("env", "model", "eval", "train_cub", "data", "train_imagenet", "profile")


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
    eval_thresholds: int = 100  # besides the recipes' own counts (CUB 4, ImageNet 1)
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
    caps: dict = field(default_factory=lambda: {"env": 15, "model": 95, "eval": 45, "train_cub": 65,
                                                "data": 30, "train_imagenet": 35, "profile": 20})
    budget: float = 305.0  # seconds for all sections: the caps' sum (bench/gpu_check.sh passes what pytest left)
    min_section: float = 8.0  # a section with less time left is skipped


SMOKE = Sizes(
    model="sat_tiny_convstem", img_size=32, resize_size=36, model_batch=2, model_iters=1, model_rounds=1,
    model_warmup=1, compile_backend="eager", matmul_side=256, copy_mib=16, eval_maps=8, eval_thresholds=5,
    eval_side=48, eval_loop_maps=2, eval_batch=4, image_wh=(64, 48), jpeg_noise=8.0, cub_train=48, cub_test=16,
    cub_classes=4, imagenet_classes=8, run_test=8, cub_steps=8, imagenet_steps=6, cub_batch=8, imagenet_batch=16,
    probe_iters=2, loader_batches=2, warm_steps=1, profile_schedule=(1, 1, 2),
    recipe_overrides={"model": {"name": "sat_tiny_convstem"}, "data": {"workers": 0}, "eval": {"batch_size": 16}},
    caps={"env": 15, "model": 75, "eval": 40, "train_cub": 30, "data": 20, "train_imagenet": 25, "profile": 35},
    budget=240.0, min_section=2.0)


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
    warming: subprocess.Popen | None = None  # the numba warm-up compiling in the background (suite/warm.py)

    def numba_ready(self) -> bool:
        """Whether the evaluator's numba kernels are compiled (the warm-up finished); until then the sections
        score with label propagation (no compile) rather than wait for it."""
        return self.warming is None or self.warming.poll() == 0

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


# -- running sections under caps, writing the report as we go --------------------------------------
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


# -- timers ----------------------------------------------------------------------------------------
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


class StepClock:
    """An optimizer step post-hook: the wall time after every optimizer step of a run."""

    def __init__(self, then: Callable[[], None] | None = None) -> None:
        self.times: list[float] = []
        self.then = then

    def __call__(self, optimizer, args, kwargs) -> None:
        self.times.append(time.perf_counter())
        if self.then is not None:
            self.then()
