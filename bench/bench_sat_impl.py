"""One SAT training step, the single implementation on timm's VisionTransformer against the former DeiT SAT class.

Until the two were merged, `sat_deit_*` and `sat_tiny_convstem` ran on a class of their own
(satlib/models/sat.py and blocks.py: `SAT(img_size=..., embed_dim=..., ...)`). This script reads that
class from git (`--old REF`, a commit that still has it) into a temporary package and times one
training step (forward, SATLoss, backward) of both, side by side in one process: configurations
alternate in rounds and each figure is the median over rounds. Both models carry the same weights
(the new one's state dict loads into the old class unchanged), and the script first checks that they
compute the same logits and maps, and prints where the ATen operators of one step differ in number
(wall-clock ratios on a shared CPU move by several percent from run to run; the operator counts do not).

    python bench/bench_sat_impl.py                      # DeiT-S (batch 8, 224 px) and the demo conv stem
    python bench/bench_sat_impl.py --threads 2 --rounds 7 --json results.json
"""

from __future__ import annotations

import argparse
import collections
import importlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import satlib

from _common import ratio, write_json

OLD_FILES = ("sat.py", "blocks.py", "freeze.py")  # the former SAT class and what it imports
ROOT = Path(__file__).resolve().parent.parent
# model name, constructor arguments of the former class, create_model arguments of the new one, batch size
CASES = {
    "DeiT-S": ("sat_deit_small_patch16_224", dict(patch_size=16, embed_dim=384, depth=12, num_heads=6),
               dict(), 8),
    "conv stem (demo)": ("sat_tiny_convstem", dict(img_size=96, stem_widths=(16, 32, 64), embed_dim=64, depth=4,
                                                   num_heads=4, mlp_ratio=2.0),
                         dict(img_size=96, stem_widths=(16, 32, 64), embed_dim=64), 32),
}


def import_old_sat(ref: str, folder: Path):
    """The SAT class of satlib/models/sat.py at git `ref`, imported as `former_satlib.models.sat.SAT`."""
    package = folder / "former_satlib" / "models"
    package.mkdir(parents=True)
    (package.parent / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    for name in OLD_FILES:
        source = subprocess.run(["git", "show", f"{ref}:satlib/models/{name}"], cwd=ROOT, check=True,
                                capture_output=True, text=True).stdout
        (package / name).write_text(source.replace("satlib.models.", "former_satlib.models."))
    sys.path.insert(0, str(folder))
    return importlib.import_module("former_satlib.models.sat").SAT


class Runner:
    """One configuration's model, batch and training step."""

    def __init__(self, label: str, model: torch.nn.Module, batch: int, side: int) -> None:
        self.label, self.model = label, model.train()
        generator = torch.Generator().manual_seed(0)
        self.images = torch.randn(batch, 3, side, side, generator=generator)
        self.labels = torch.randint(0, 200, (batch,), generator=generator)
        self.loss = satlib.SATLoss()

    def step(self) -> None:
        loss, _ = self.loss(self.model(self.images), self.labels)
        loss.backward()
        self.model.zero_grad(set_to_none=True)

    def timed(self, iters: int) -> tuple[float, float]:
        """Wall-clock and process CPU seconds per step over `iters` steps."""
        start, start_cpu = time.perf_counter(), time.process_time()
        for _ in range(iters):
            self.step()
        return (time.perf_counter() - start) / iters, (time.process_time() - start_cpu) / iters


def build_pair(old_sat: type, case: str, attn_impl: str) -> tuple[torch.nn.Module, torch.nn.Module, float]:
    """The new and the former model with the same weights, and their largest output difference (eval mode)."""
    name, old_args, new_args, _ = CASES[case]
    torch.manual_seed(0)
    new = satlib.create_model(name, num_classes=200, attn_impl=attn_impl, **new_args)
    old = old_sat(num_classes=200, attn_impl=attn_impl, **old_args)
    old.load_state_dict(new.state_dict())
    x = torch.randn(2, 3, *new.img_size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = new.eval()(x), old.eval()(x)
    difference = max((a.logits - b.logits).abs().max().item(), (a.loc_map - b.loc_map).abs().max().item())
    return new, old, difference


def operator_counts(runner: Runner) -> collections.Counter:
    """How many times one training step calls each ATen operator (forward and backward)."""
    runner.step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        runner.step()
    return collections.Counter(event.name for event in profile.events())


def operator_differences(new: Runner, old: Runner) -> dict[str, tuple[int, int]]:
    """Operators called a different number of times by the two steps: name -> (new, former)."""
    a, b = operator_counts(new), operator_counts(old)
    return {name: (a[name], b[name]) for name in sorted(a.keys() | b.keys()) if a[name] != b[name]}


def measure(args: argparse.Namespace, old_sat: type, case: str) -> dict:
    batch = CASES[case][3]
    runners = []
    for attn_impl in ("sdpa", "explicit"):
        new, old, difference = build_pair(old_sat, case, attn_impl)
        if difference > 1e-4:
            raise SystemExit(f"{case} {attn_impl}: the two implementations differ by {difference:.3g}")
        side = new.img_size[0]
        runners += [Runner(f"new {attn_impl}", new, batch, side), Runner(f"former {attn_impl}", old, batch, side)]
        differences = operator_differences(*runners[-2:])
        print(f"{case} {attn_impl}: outputs differ by {difference:.2g}; operators called a different number of "
              f"times (new, former): {differences or 'none'}")
    for runner in runners:
        for _ in range(args.warmup):
            runner.step()
    wall = {r.label: [] for r in runners}
    cpu = {r.label: [] for r in runners}
    for _ in range(args.rounds):
        for runner in runners:
            seconds, cpu_seconds = runner.timed(args.iters)
            wall[runner.label].append(1000 * seconds)
            cpu[runner.label].append(1000 * cpu_seconds)
    return {label: dict(ms_per_step=statistics.median(wall[label]), cpu_ms_per_step=statistics.median(cpu[label]),
                        min_cpu_ms_per_step=min(cpu[label]), ms_per_step_rounds=wall[label],
                        cpu_ms_per_step_rounds=cpu[label]) for label in wall}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", default="c55006c", help="a git commit with the former SAT class")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iters", type=int, default=3, help="steps per round")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--json", default=None, help="write the results to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        old_sat = import_old_sat(args.old, Path(folder))
        for case in args.cases:
            results[case] = measure(args, old_sat, case)
    print(f"CPU, {args.threads} thread(s); median of {args.rounds} rounds × {args.iters} steps; former = {args.old}")
    print(f"{'model':<18}{'configuration':<18}{'ms/step':>10}{'CPU ms/step':>13}{'min CPU ms':>12}")
    for case, rows in results.items():
        for label, row in rows.items():
            print(f"{case:<18}{label:<18}{row['ms_per_step']:>10.1f}{row['cpu_ms_per_step']:>13.1f}"
                  f"{row['min_cpu_ms_per_step']:>12.1f}")
        for impl in ("sdpa", "explicit"):
            new, old = rows[f"new {impl}"], rows[f"former {impl}"]
            print(f"{case:<18}new / former {impl:<8} wall {ratio(new['ms_per_step'], old['ms_per_step']):.3f}, "
                  f"CPU {ratio(new['cpu_ms_per_step'], old['cpu_ms_per_step']):.3f}, "
                  f"min CPU {ratio(new['min_cpu_ms_per_step'], old['min_cpu_ms_per_step']):.3f}")
    if args.json:
        write_json(args.json, dict(threads=args.threads, rounds=args.rounds, iters=args.iters, old=args.old,
                                   results=results))
    return results


if __name__ == "__main__":
    main()
