"""`satlib demo`: the embedded end-to-end run on a CPU in minutes.

Generates (once, cached) the synthetic dataset, trains the small conv-stem SAT from scratch with the
`synthetic_cpu` recipe and, beside it, the CAM baseline of the same backbone (`cam_tiny_convstem`: the
same network trained for classification alone, its class map as the localization map) with the same
recipe, evaluates both on the held-out split, and prints SAT's localization next to the CAM's and two
trivial boxes. The schedule is a fixed number of steps: the same seed on the same machine (same thread
count) gives the same numbers; the recipe's wall-clock budget is only a safety cap.

On two or more cores the two runs train at the same time, each in its own process on half the cores
(one process per run keeps every core busy: a small model gains little from a second thread).

Writes to `out`: sat/ and cam/ (each run's checkpoint.pt, best.pt, metrics.json), metrics.json (SAT's
evaluator keys, the CAM baseline's as trained_cam_*, the trivial boxes as baseline_*, timings) and
demo.png (the same held-out images under both maps).
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import torch

from satlib.assess import METHOD_NAMES, compare_checkpoints
from satlib.build import prepare_data
from satlib.config import Config, config_from_dict, load_config
from satlib.data.cub import read_split_boxes
from satlib.evaluation import trivial_baselines
from satlib.files import write_metrics
from satlib.models import baseline_name
from satlib.runtime import cpu_threads, resolve_device
from satlib.train import train

BASELINES = ("cam", "tscam")  # what `baseline=` may name: the method of the backbone's baseline model
BASELINE_KEYS = ("top1_cls", "gt_known", "top1_loc", "best_threshold", "time")  # reported as trained_<m>_<key>


def run_demo(out: str | Path = "runs/demo", *, seed: int = 0, time_budget: float | None = None,
             device: str = "auto", recipe: str = "synthetic_cpu", progress: bool = True,
             overrides: list[str] | tuple = (), baseline: str | None = "cam") -> dict:
    """Run the demo; returns the metrics written to `out`/metrics.json.

    `baseline` names the trained baseline beside SAT ("cam", "tscam"; None: SAT alone).
    """
    started = time.perf_counter()
    out = Path(out)
    config = load_config(recipe, [f"train.seed={seed}", f"train.device={device}", *overrides,
                                  f"train.out={out / 'sat'}"])
    if time_budget is not None:
        config.train.time_budget = float(time_budget)
    root = prepare_data(config)
    data_seconds = time.perf_counter() - started
    baseline_config = baseline_recipe(config, baseline, out) if baseline else None
    parallel = baseline_config is not None and trains_in_parallel(config)
    record, baseline_record = _train_both(config, baseline_config, parallel=parallel, progress=progress)
    trivial = trivial_baselines(*read_split_boxes(root))
    runs = [out / "sat" / "checkpoint.pt"] + ([Path(baseline_config.train.out) / "checkpoint.pt"]
                                              if baseline_config else [])
    figure = compare_checkpoints(runs, data_root=root, out=out / "demo.png", num=8, cols=8, device=device)
    extra = {f"baseline_{name}": value for name, value in trivial.items()}
    if baseline_record is not None:
        extra.update({f"trained_{baseline}_{key}": baseline_record[key] for key in BASELINE_KEYS})
        extra[f"trained_{baseline}_model"] = baseline_config.model.name
    extra.update(seconds_total=time.perf_counter() - started, seconds_data=data_seconds,
                 seconds_train=record["time"], seed=seed, threads=_threads(parallel)[0],
                 figure=figure.name)
    history = json.loads((out / "sat" / "metrics.json").read_text())["history"]
    write_metrics(out / "metrics.json", record, history, **extra)
    print(report(record, trivial, extra["seconds_total"], baseline=baseline, baseline_record=baseline_record))
    print(f"wrote {out / 'metrics.json'}, {figure}, {out / 'sat'}"
          + (f", {baseline_config.train.out}" if baseline_config else ""))
    return {**record, **extra}


def baseline_recipe(config: Config, method: str, out: Path) -> Config:
    """The same recipe for the baseline `method` of the config's backbone (sat_tiny_convstem -> cam_tiny_convstem)."""
    if method not in BASELINES:
        raise ValueError(f"baseline={method!r}: expected one of {BASELINES} or None")
    baseline = config_from_dict(config.to_dict(), source="demo recipe")
    baseline.model.name = baseline_name(config.model.name, method)
    baseline.train.out = str(out / method)
    return baseline


def _threads(parallel: bool) -> tuple[int, int]:
    """Torch threads of (SAT's process, the baseline's process): half the cores each when both train at once."""
    cores = cpu_threads()
    if not parallel or cores < 2:
        return cores, cores
    return cores - cores // 2, cores // 2


def trains_in_parallel(config: Config) -> bool:
    """Whether the baseline trains in a process of its own beside SAT: on a CPU with 2 or more cores."""
    return resolve_device(config.train.device).type == "cpu" and cpu_threads() >= 2


def _train_both(config: Config, baseline: Config | None, *, parallel: bool,
                progress: bool) -> tuple[dict, dict | None]:
    """Train SAT here and the baseline beside it (another process, `parallel`) or after it."""
    sat_threads, baseline_threads = _threads(parallel)
    torch.set_num_threads(sat_threads)
    if baseline is None:
        return train(config, progress=progress), None
    if not parallel:
        return train(config, progress=progress), train(baseline, progress=progress, quiet=True)
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        future = pool.submit(_train_in_process, baseline.to_dict(), baseline_threads)
        record = train(config, progress=progress)
        return record, future.result()


def _train_in_process(config: dict, threads: int) -> dict:
    """The baseline's run in its own process (spawned: a clean torch with its own thread pool)."""
    torch.set_num_threads(threads)
    return train(config_from_dict(config, source="demo baseline"), progress=False, quiet=True)


def report(record: dict, trivial: dict, seconds: float, *, baseline: str | None = None,
           baseline_record: dict | None = None) -> str:
    """The demo's summary table: SAT, the trained baseline, trivial boxes (and SAT's own head CAM, an aside)."""
    rows = [("SAT (loc token map)", record["top1_cls"], record["gt_known"], record["top1_loc"],
             record["best_threshold"])]
    if baseline_record is not None:
        rows.append((f"{METHOD_NAMES[baseline]} baseline (trained alone)", baseline_record["top1_cls"],
                     baseline_record["gt_known"], baseline_record["top1_loc"], baseline_record["best_threshold"]))
    rows += [(f"trivial box: {name.replace('_', ' ')}", None, value, None, None) for name, value in trivial.items()]
    if "cam_gt_known" in record:
        rows.append(("aside: SAT net's own head CAM", None, record["cam_gt_known"], record["cam_top1_loc"],
                     record["cam_best_threshold"]))
    lines = [f"held-out split, {seconds:.0f} s end to end",
             f"{'':32s} {'top-1 cls':>9s} {'GT-known':>9s} {'Top-1 Loc':>10s}  threshold"]
    for name, top1, gt_known, top1_loc, thr in rows:
        cls = f"{top1:9.1f}" if top1 is not None else f"{'':9s}"
        loc = f"{top1_loc:10.1f}" if top1_loc is not None else f"{'':10s}"
        lines.append(f"{name:32s} {cls} {gt_known:9.1f} {loc}  {'' if thr is None else f'{thr:g}'}")
    for run in (record, baseline_record or {}):
        if run.get("stopped_early"):
            lines.append(f"warning: {run['stop_reason']}")
    return "\n".join(lines)
