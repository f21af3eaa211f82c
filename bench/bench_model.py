"""Training-step speed and peak memory of SAT ("sdpa" vs "explicit") against a plain timm DeiT of the same size.

One forward + backward per step (SAT with SATLoss, DeiT with cross-entropy), measured side by side:
configurations alternate in rounds so a machine that slows down slows them all, and each figure is the
median over rounds. Peak memory is what a training step needs above the resident weights: on CUDA the
rise of torch.cuda.max_memory_allocated over one step; on CPU the rise of the resident set's high-water
mark (VmHWM, reset after a warmup step) over two steps, each configuration in a fresh subprocess with a
fixed glibc mmap threshold so freed tensors leave the resident set (process-level, so approximate).

    python bench/bench_model.py                                   # CPU, DeiT-S, fp32, ~1-2 min on 2 cores
    python bench/bench_model.py --device cuda --dtype bf16 --compile --batch-size 128
    python bench/bench_model.py --model sat_tiny_convstem --batch-size 64 --json results.json

With --dtype bf16 or --compile an extra "explicit fp32" baseline (eager, float32) is measured too.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass

import timm
import torch
import torch.nn.functional as F

import satlib
from satlib.models import VARIANTS, ConvStem
from satlib.runtime import deterministic_algorithms

from _common import fmt, write_json

# glibc: a fixed mmap threshold returns every large tensor to the OS when freed, so RSS follows live memory
CHILD_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Config:
    label: str
    kind: str  # "sat" or "deit"
    attn_impl: str = "sdpa"
    dtype: str = "fp32"
    compile: bool = False
    optimizer: bool = False  # an AdamW step after the backward (a training step as train() takes it)
    deterministic: bool = False  # under satlib.runtime.deterministic_algorithms (train.deterministic)


def build(args: argparse.Namespace, config: Config) -> torch.nn.Module:
    """The SAT variant or a plain timm ViT with the same embedding, width, depth and heads."""
    if config.kind == "sat":
        return satlib.create_model(args.model, num_classes=args.num_classes, img_size=args.img_size,
                                   attn_impl=config.attn_impl)
    variant = {**VARIANTS[args.model]}
    embed = {}
    if variant.get("stem_widths"):
        widths = variant["stem_widths"]
        embed = dict(embed_layer=lambda img_size, in_chans, embed_dim, **_: ConvStem(img_size, in_chans, embed_dim,
                                                                                     widths))
    return timm.models.VisionTransformer(
        img_size=args.img_size or variant.get("img_size", 224), patch_size=variant.get("patch_size", 16),
        embed_dim=variant["embed_dim"], depth=variant["depth"], num_heads=variant["num_heads"],
        num_classes=args.num_classes, qkv_bias=True, **embed)


class Runner:
    """One configuration's model, data and training step."""

    def __init__(self, args: argparse.Namespace, config: Config) -> None:
        torch.manual_seed(0)
        self.args, self.config = args, config
        self.device = torch.device(args.device)
        self.model = build(args, config).to(self.device).train()
        side = self.model.patch_embed.img_size
        self.images = torch.randn(args.batch_size, 3, *side, device=self.device)
        self.labels = torch.randint(0, args.num_classes, (args.batch_size,), device=self.device)
        self.sat_loss = satlib.SATLoss().to(self.device)
        self.forward = torch.compile(self.model, backend=args.compile_backend) if config.compile else self.model
        dtype = DTYPES[config.dtype]
        self.autocast = (torch.autocast(self.device.type, dtype=dtype) if dtype != torch.float32
                         else nullcontext())
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4) if config.optimizer else None

    def step(self) -> None:
        """Forward and backward (and with `optimizer`, AdamW's step), gradients cleared after."""
        with deterministic_algorithms(self.config.deterministic):
            with self.autocast:
                out = self.forward(self.images)
                if self.config.kind == "sat":
                    loss = self.sat_loss(out, self.labels)[0]
                else:
                    loss = F.cross_entropy(out.float(), self.labels)
            loss.backward()
            if self.optimizer is not None:
                self.optimizer.step()
        self.model.zero_grad(set_to_none=True)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def timed(self, iters: int) -> tuple[float, float]:
        """Wall-clock and process CPU seconds per step over `iters` steps."""
        self.sync()
        start, start_cpu = time.perf_counter(), time.process_time()
        for _ in range(iters):
            self.step()
        self.sync()
        return (time.perf_counter() - start) / iters, (time.process_time() - start_cpu) / iters


def cuda_peak_memory_mb(runner: Runner) -> float:
    """Peak memory one training step allocates above what is resident before it, in MiB (CUDA)."""
    runner.sync()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(runner.device)
    start = torch.cuda.memory_allocated(runner.device)
    runner.step()
    runner.sync()
    return (torch.cuda.max_memory_allocated(runner.device) - start) / 2**20


def cpu_peak_memory_mb(args: argparse.Namespace, config: Config) -> float | None:
    """Rise of the resident set's high-water mark over two training steps in a fresh process, in MiB."""
    if args.no_cpu_memory:
        return None
    command = [sys.executable, __file__, "--_cpu_memory_child", json.dumps(asdict(config)), *sys.argv[1:]]
    env = {**os.environ, **CHILD_ENV, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if result.returncode != 0:
        print(f"memory probe for {config.label} failed:\n{result.stderr[-2000:]}", file=sys.stderr)
        return None
    return float(result.stdout.strip().splitlines()[-1])


def _proc_status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def cpu_memory_child(args: argparse.Namespace, config: Config) -> None:
    """In a fresh process: build and warm up, reset the RSS high-water mark, train, print its rise in MiB."""
    runner = Runner(args, config)
    runner.step()
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")  # Linux: reset VmHWM to the current RSS
        before = _proc_status_kib("VmRSS")
        peak = lambda: _proc_status_kib("VmHWM")  # noqa: E731
    except OSError:  # no /proc reset: fall back to the lifetime peak (may hide a smaller step peak)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # noqa: E731
    for _ in range(2):
        runner.step()
    print((peak() - before) / 1024)


def configs_for(args: argparse.Namespace) -> list[Config]:
    common = dict(dtype=args.dtype, compile=args.compile)
    configs = [Config("SAT sdpa", "sat", "sdpa", **common), Config("SAT explicit", "sat", "explicit", **common),
               Config("DeiT (timm)", "deit", **common)]
    if args.dtype != "fp32" or args.compile:
        configs.append(Config("SAT explicit fp32 eager", "sat", "explicit"))
    return configs


def measure(args: argparse.Namespace, configs: list[Config] | None = None) -> dict:
    configs = configs or configs_for(args)
    runners = [Runner(args, config) for config in configs]
    for runner in runners:  # warmup (and compilation) outside the timed rounds
        for _ in range(args.warmup):
            runner.step()
    times = {config.label: [] for config in configs}
    cpu_times = {config.label: [] for config in configs}
    for _ in range(args.rounds):
        for runner in runners:
            wall, cpu = runner.timed(args.iters)
            times[runner.config.label].append(wall)
            cpu_times[runner.config.label].append(cpu)
    cuda = args.device.startswith("cuda")
    peaks = {r.config.label: cuda_peak_memory_mb(r) if cuda else None for r in runners}
    del runners
    results = {}
    for config in configs:
        seconds = statistics.median(times[config.label])
        peak = peaks[config.label] if cuda else cpu_peak_memory_mb(args, config)
        results[config.label] = dict(**asdict(config), ms_per_step=1000 * seconds,
                                     images_per_s=args.batch_size / seconds, peak_mb=peak,
                                     cpu_ms_per_step=1000 * statistics.median(cpu_times[config.label]),
                                     ms_per_step_rounds=[1000 * t for t in times[config.label]])
    return results


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def summarize(results: dict, cuda: bool) -> dict:
    sdpa, explicit, deit = results["SAT sdpa"], results["SAT explicit"], results["DeiT (timm)"]
    ratios = {
        "sdpa_speedup_vs_explicit": ratio(sdpa["images_per_s"], explicit["images_per_s"]),
        "sdpa_memory_vs_explicit": ratio(sdpa["peak_mb"], explicit["peak_mb"]),
        "sat_sdpa_time_vs_deit": ratio(sdpa["ms_per_step"], deit["ms_per_step"]),
    }
    if not cuda:  # process CPU time: steadier than wall time on a shared CPU (waiting for a core costs none)
        ratios["sdpa_cpu_time_speedup_vs_explicit"] = ratio(explicit["cpu_ms_per_step"], sdpa["cpu_ms_per_step"])
        ratios["sat_sdpa_cpu_time_vs_deit"] = ratio(sdpa["cpu_ms_per_step"], deit["cpu_ms_per_step"])
    if "SAT explicit fp32 eager" in results:
        base = results["SAT explicit fp32 eager"]
        ratios["sdpa_speedup_vs_explicit_fp32_eager"] = ratio(sdpa["images_per_s"], base["images_per_s"])
        ratios["sdpa_memory_vs_explicit_fp32_eager"] = ratio(sdpa["peak_mb"], base["peak_mb"])
    return ratios


def environment(args: argparse.Namespace) -> dict:
    device = (torch.cuda.get_device_name(args.device) if args.device.startswith("cuda")
              else f"CPU, {torch.get_num_threads()} threads")
    return dict(device=device, torch=torch.__version__, timm=timm.__version__, satlib=satlib.__version__,
                model=args.model, batch_size=args.batch_size, img_size=args.img_size, dtype=args.dtype,
                compile=args.compile, iters=args.iters, rounds=args.rounds, warmup=args.warmup,
                command="python bench/bench_model.py " + " ".join(sys.argv[1:]))


def report(env: dict, results: dict, ratios: dict) -> None:
    print(f"{env['model']} on {env['device']}, batch {env['batch_size']}, {env['dtype']}"
          f"{', compiled' if env['compile'] else ''}; median of {env['rounds']} rounds × {env['iters']} steps")
    print(f"{'configuration':<26}{'ms/step':>10}{'img/s':>10}{'peak MiB':>10}{'CPU ms/step':>13}")
    for label, r in results.items():
        print(f"{label:<26}{r['ms_per_step']:>10.1f}{r['images_per_s']:>10.1f}{fmt(r['peak_mb'], '.0f'):>10}"
              f"{r['cpu_ms_per_step']:>13.1f}")
    targets = {"sdpa_speedup_vs_explicit": "≥ 1.1 on CPU fp32", "sat_sdpa_time_vs_deit": "≤ 1.10",
               "sdpa_speedup_vs_explicit_fp32_eager": "≥ 3 on GPU bf16+compile",
               "sdpa_memory_vs_explicit_fp32_eager": "≤ 0.6 on GPU bf16+compile"}
    for name, value in ratios.items():
        print(f"{name:<40}{fmt(value, '.2f'):>8}   {targets.get(name, '')}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sat_deit_small_patch16_224", choices=satlib.list_models())
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=list(DTYPES))
    parser.add_argument("--compile", action="store_true", help="torch.compile every configuration")
    parser.add_argument("--compile-backend", default="inductor", help="torch.compile backend (eager: trace only)")
    parser.add_argument("--batch-size", type=int, default=None, help="default 8 on CPU, 128 on CUDA")
    parser.add_argument("--img-size", type=int, default=None, help="default: the variant's")
    parser.add_argument("--num-classes", type=int, default=200)
    parser.add_argument("--iters", type=int, default=None, help="steps per round (default 3 CPU, 20 CUDA)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=None, help="default 2 CPU, 5 CUDA (compile needs more)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--no-cpu-memory", action="store_true", help="skip the CPU memory subprocesses")
    parser.add_argument("--json", default=None, help="write the results to this file")
    parser.add_argument("--_cpu_memory_child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    cuda = args.device.startswith("cuda")
    args.batch_size = args.batch_size or (128 if cuda else 8)
    args.iters = args.iters or (20 if cuda else 3)
    args.warmup = args.warmup if args.warmup is not None else (5 if cuda else 2)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    if args._cpu_memory_child:
        cpu_memory_child(args, Config(**json.loads(args._cpu_memory_child)))
        return 0
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 for the explicit baseline
    env = environment(args)
    results = measure(args)
    ratios = summarize(results, cuda=args.device.startswith("cuda"))
    report(env, results, ratios)
    if args.json:
        write_json(args.json, dict(environment=env, results=results, ratios=ratios))
    return 0


if __name__ == "__main__":
    sys.exit(main())
