"""`satlib demo`: the embedded end-to-end run on a CPU in minutes.

Generates (once, cached) the synthetic dataset, trains the small conv-stem SAT from scratch with the
`synthetic_cpu` recipe (a fixed number of steps: the same seed gives the same numbers; its wall-clock
budget is only a safety cap), evaluates on the held-out split, and prints SAT's localization next to
the same network's CAM and two trivial boxes. Writes to `out`: checkpoint.pt, metrics.json (the
evaluator's keys, plus cam_*, baseline_* and timings) and demo.png (`satlib visualize` with the CAM).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from satlib.assess import visualize_checkpoint
from satlib.config import load_config
from satlib.data.from_config import prepare_data
from satlib.runtime import cpu_threads
from satlib.train import train, write_metrics


def run_demo(out: str | Path = "runs/demo", *, seed: int = 0, time_budget: float | None = None,
             device: str = "auto", recipe: str = "synthetic_cpu", progress: bool = True,
             overrides: list[str] | tuple = ()) -> dict:
    """Run the demo; returns the metrics written to `out`/metrics.json."""
    from satlib.evaluation.baselines import trivial_baselines

    started = time.perf_counter()
    torch.set_num_threads(cpu_threads())
    config = load_config(recipe, [f"train.out={out}", f"train.seed={seed}", f"train.device={device}",
                                  *overrides])
    if time_budget is not None:
        config.train.time_budget = float(time_budget)
    out = Path(out)
    root = prepare_data(config)
    data_seconds = time.perf_counter() - started
    record = train(config, progress=progress)
    baselines = trivial_baselines(root)
    figure_path = visualize_checkpoint(out / "checkpoint.pt", data_root=root, out=out / "demo.png", num=8, cols=8,
                                       cam=True, device=device)
    history = json.loads((out / "metrics.json").read_text())["history"]
    extra = {f"baseline_{name}": value for name, value in baselines.items()}
    extra.update(seconds_total=time.perf_counter() - started, seconds_data=data_seconds,
                 seconds_train=record["time"], seed=seed, figure=figure_path.name)
    write_metrics(out / "metrics.json", record, history, **extra)
    print(report(record, baselines, extra["seconds_total"]))
    print(f"wrote {out / 'metrics.json'}, {figure_path}, {out / 'checkpoint.pt'}")
    return {**record, **extra}


def report(record: dict, baselines: dict, seconds: float) -> str:
    """The demo's summary table: SAT, CAM and trivial boxes on the held-out split."""
    rows = [("SAT (loc token map)", record["gt_known"], record["top1_loc"], record["best_threshold"]),
            ("CAM (same network's head)", record["cam_gt_known"], record["cam_top1_loc"],
             record["cam_best_threshold"])]
    rows += [(f"trivial box: {name.replace('_', ' ')}", value, None, None) for name, value in baselines.items()]
    lines = [f"held-out split: top-1 classification {record['top1_cls']:.1f}%  ({seconds:.0f} s end to end)",
             f"{'':30s} {'GT-known':>9s} {'Top-1 Loc':>10s}  threshold"]
    for name, gt_known, top1_loc, thr in rows:
        loc = f"{top1_loc:10.1f}" if top1_loc is not None else f"{'':10s}"
        thr_text = f"{thr:g}" if thr is not None else ""
        lines.append(f"{name:30s} {gt_known:9.1f} {loc}  {thr_text}")
    if record.get("stopped_early"):
        lines.append(f"warning: {record['stop_reason']}")
    return "\n".join(lines)
