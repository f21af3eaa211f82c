"""Train a recipe over seeds, one process per run on one torch thread, and record each run's summary.

    python bench/evidence_runs.py NAME --config synthetic_book --seeds 0 1 2 [--jobs 2] [section.key=value ...]

Each run is `python -m satlib train --config CONFIG --quiet train.seed=S train.out=RUNS/NAME/seedS
[overrides]` with OMP_NUM_THREADS=1 (a small model gains little from a second thread, and two runs then
share two cores without oversubscribing them); up to `--jobs` runs train at once. The summary of each
run (its metrics.json evaluator keys, training seconds, wall seconds with start-up and evaluation, CPU
seconds of the process (user + system: its core-seconds, less sensitive to load than the wall clock), the
machine's load average) goes into bench/evidence.json under NAME, with the command that made it.
Runs are deterministic for a seed and thread count; the times depend on what else the machine runs.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "evidence.json"
SUMMARY_KEYS = ("top1_cls", "gt_known", "top1_loc", "best_threshold", "maxboxacc", "cam_gt_known",
                "cam_top1_loc", "cam_best_threshold", "train_top1", "epoch", "step", "time", "stopped_early")
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def train_command(config: str, seed: int, out: Path, overrides: list[str]) -> list[str]:
    """The `satlib train` command line of one seed's run."""
    return [sys.executable, "-m", "satlib", "train", "--config", config, "--quiet",
            f"train.seed={seed}", f"train.out={out}", *overrides]


def run_seed(config: str, seed: int, out: Path, overrides: list[str]) -> dict:
    """Train one seed in its own process; its summary (`SUMMARY_KEYS`, wall seconds, load averages)."""
    command = train_command(config, seed, out, overrides)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "log.txt", "w") as log:
        process = subprocess.Popen(command, env={**os.environ, **ONE_THREAD}, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"seed {seed} failed ({' '.join(command)}):\n{(out / 'log.txt').read_text()[-3000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    summary = {key: metrics[key] for key in SUMMARY_KEYS if key in metrics}
    return {**summary, "wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "load_before": load_before,
            "load_after": os.getloadavg()[0]}


def record(name: str, entry: dict, seed: int, summary: dict) -> None:
    """Add one seed's summary to bench/evidence.json under `name` (locked: several drivers may run at once)."""
    with open(Path(tempfile.gettempdir()) / "satlib-evidence.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
        stored = results.setdefault(name, {**entry, "seeds": {}})
        stored.update(entry)
        stored["seeds"][str(seed)] = summary
        stored["seeds"] = dict(sorted(stored["seeds"].items()))
        tmp = RESULTS.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=1) + "\n")
        os.replace(tmp, RESULTS)


def mean_sd(values: list[float]) -> str:
    """'mean ± sd' (sample sd) of `values`, one decimal."""
    if len(values) < 2:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help="the runs' name in bench/evidence.json")
    parser.add_argument("--config", required=True, help="recipe file or packaged recipe name")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2, help="runs training at once (default 2)")
    parser.add_argument("--runs", default="runs/evidence", help="where the runs' folders go")
    args, overrides = parser.parse_known_args(argv)
    entry = {"config": args.config, "overrides": overrides,
             "command": " ".join(["satlib train --config", args.config, "train.seed=S", *overrides]),
             "threads": 1, "jobs": args.jobs}

    def one(seed: int) -> dict:
        summary = run_seed(args.config, seed, Path(args.runs) / args.name / f"seed{seed}", overrides)
        record(args.name, entry, seed, summary)
        print(f"{args.name} seed {seed}: top-1 {summary['top1_cls']:.1f}, GT-known {summary['gt_known']:.1f}, "
              f"Top-1 Loc {summary['top1_loc']:.1f} @ {summary['best_threshold']:g}; "
              f"train {summary['time']:.0f} s, wall {summary['wall']:.0f} s, cpu {summary['cpu']:.0f} s", flush=True)
        return summary

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        summaries = list(pool.map(one, args.seeds))
    for key in ("top1_cls", "gt_known", "top1_loc", "time", "cpu"):
        print(f"  {key}: {mean_sd([s[key] for s in summaries])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
