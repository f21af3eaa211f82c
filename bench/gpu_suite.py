"""One command for a lent GPU: every speed figure satlib needs, written to report.json and report.md as it goes.

Sections, most valuable first (each with a time cap; a failing one records its error and the suite goes on):

    env             device, versions, measured bf16 matmul and copy ceilings
    model           DeiT-S 224, batch 128, a training step (forward, SATLoss, backward, AdamW): the 2 x 2
                    explicit / fused attention x fp32 / bf16, then bf16 compiled, bf16 deterministic and
                    timm's DeiT-S bf16; images/s, peak memory, TFLOP/s, ratios (bench_model)
    eval            CUB- and ImageNet-sized evaluations at the recipes' threshold counts (CUB 4, ImageNet 1)
                    and at 100: both device paths (label propagation, the host path) vs the per-image
                    loop, scaled (bench_eval)
    train_cub       the CUB recipe (batch 256, bf16) through satlib.train.train for ~200 steps: loop,
                    loader-only and model-only images/s, seconds per epoch, a timed evaluation, and the
                    projected 30-epoch run
    data            a CUB-sized fake JPEG set (200 classes) and the loader's images/s (bench_data)
    train_imagenet  the ImageNet recipe's step rate (1000 classes, batch 512, or grad accumulation if
                    that does not fit) and its projected epoch
    profile         torch.profiler summaries of one training step and one evaluator batch

What compiles is compiled ahead where it can be (suite/warm.py): the suite starts compiling the
evaluator's numba kernels in a process of its own when it starts (into NUMBA_CACHE_DIR, by default
bench/.numba-cache), and sections that would need them before they are ready score with label
propagation instead of waiting; `--warm` compiles them and the model section's compiled step, which
bench/gpu_check.sh runs while `pytest -m gpu` runs.

This file is the command line; the suite itself is in bench/suite/ (harness, one module per section,
profile analysis, report). Run from the repository root (the repository on PYTHONPATH; needs torch,
timm, einops, torchvision, scipy, PIL; cv2 for the wsoleval loop, skipped without it):

    bench/gpu_check.sh                                                   # pytest -m gpu + the suite, <= 8 min
    PYTHONPATH=. python bench/gpu_suite.py --out out/gpu                 # the suite alone
    python bench/gpu_suite.py --smoke --out out/suite-smoke              # CPU, tiny sizes
    PYTHONPATH=. python bench/gpu_suite.py --sections model,eval --out out/gpu
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from suite.harness import SECTIONS, SMOKE, Sizes, Suite, run_suite
from suite.report import print_summary
from suite.sections import SECTION_RUNS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="folder for report.json, report.md and traces")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU (checks the suite, not the speed)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    parser.add_argument("--budget", type=float, default=None, help="seconds for all sections (default 305; smoke 240)")
    parser.add_argument("--compile-train", action="store_true", help="train.compile=true in the training sections")
    parser.add_argument("--keep-work", action="store_true", help="keep the generated data and checkpoints")
    parser.add_argument("--warm", action="store_true", help="only compile ahead (numba, and on CUDA the compiled "
                                                            "step) into the caches, then exit")
    args = parser.parse_args(argv)
    args.sections = [name.strip() for name in args.sections.split(",") if name.strip()]
    unknown = [name for name in args.sections if name not in SECTIONS]
    if unknown:
        parser.error(f"--sections: unknown {unknown}; choose from {', '.join(SECTIONS)}")
    return args


WARM = Path(__file__).with_name("suite") / "warm.py"


def start_warmup(what: list[str]) -> subprocess.Popen:
    """suite/warm.py compiling `what` in a process of its own (it shares NUMBA_CACHE_DIR with this one)."""
    return subprocess.Popen([sys.executable, str(WARM), *what], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(__file__).with_name(".numba-cache")))
    if args.warm:
        return subprocess.run([sys.executable, str(WARM), "numba", "inductor"]).returncode
    if args.out is None:
        print("gpu_suite: --out is required", file=sys.stderr)
        return 2
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
    suite.warming = start_warmup(["numba"])  # loads the kernels in seconds when the cache is warm
    try:
        run_suite(suite, [(name, SECTION_RUNS[name], sizes.caps[name]) for name in args.sections])
    finally:
        if suite.warming.poll() is None:
            suite.warming.kill()
        suite.warming.wait()
        if not args.keep_work:
            shutil.rmtree(work, ignore_errors=True)
    print_summary(suite.report)
    return 0 if all(e["status"] == "ok" for e in suite.report["sections"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
