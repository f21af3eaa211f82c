"""`satlib demo`: the embedded end-to-end run on a CPU in minutes.

Generates (once, cached) the synthetic dataset, trains the small conv-stem SAT from scratch with the
`synthetic_cpu` recipe under a wall-clock budget, evaluates on the held-out split, and prints SAT's
localization next to the same network's CAM and two trivial boxes. Writes to `out`: checkpoint.pt,
metrics.json (the evaluator's keys, plus cam_*, baseline_* and timings) and demo.png.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

from satlib.config import load_config
from satlib.train import prepare_data, train


def _threads() -> int:
    """One torch thread per core this process may use: more makes OpenMP spin (8-12x slower)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores)


def run_demo(out: str | Path = "runs/demo", *, seed: int = 0, time_budget: float | None = None,
             device: str = "auto", recipe: str = "synthetic_cpu", progress: bool = True,
             overrides: list[str] | tuple = ()) -> dict:
    """Run the demo; returns the metrics written to `out`/metrics.json."""
    from satlib.data.synthetic import trivial_baselines
    from satlib.train import write_metrics

    started = time.perf_counter()
    torch.set_num_threads(_threads())
    config = load_config(recipe, [f"train.out={out}", f"train.seed={seed}", f"train.device={device}",
                                  *overrides])
    if time_budget is not None:
        config.train.time_budget = float(time_budget)
    out = Path(out)
    root = prepare_data(config)
    data_seconds = time.perf_counter() - started
    record = train(config, progress=progress)
    baselines = trivial_baselines(root)
    figure_path = demo_figure(out / "checkpoint.pt", root, out / "demo.png", device=device)
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
    return "\n".join(lines)


@torch.no_grad()
def demo_figure(checkpoint: Path, data_root: Path, out: Path, *, num: int = 8, device: str = "auto") -> Path:
    """Test images with SAT's map and box (top row) and the CAM's (bottom row), GT boxes in both."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from satlib.files import atomic_write
    from satlib.checkpoint import model_from_checkpoint
    from satlib.data import collate, denormalize
    from satlib.evaluation import box_iou, boxes_from_maps, show_localization
    from satlib.train import build_datasets, resolve_device

    device_ = resolve_device(device)
    model, config, payload = model_from_checkpoint(checkpoint, device=device_)
    config.data.root, config.data.dataset = str(data_root), "cub"
    _, test_set = build_datasets(config, data_root, train=False)
    batch = collate([test_set[i] for i in range(min(num, len(test_set)))])
    output = model(batch["images"].to(device_))
    labels = batch["labels"].to(device_)
    cams = output.class_maps.float()[torch.arange(len(labels), device=device_), labels]
    metrics = payload["metrics"]
    rows = [("SAT", output.loc_map.float(), metrics["best_threshold"], metrics["gt_known"]),
            ("CAM", cams, metrics["cam_best_threshold"], metrics["cam_gt_known"])]
    images = denormalize(batch["images"])
    figure, axes = plt.subplots(2, len(images), figsize=(2.2 * len(images), 5.0), squeeze=False)
    for row, (name, maps, threshold, _) in enumerate(rows):
        boxes = boxes_from_maps(maps, [threshold], config.data.img_size, protocol=config.eval.protocol)[:, 0]
        for i, ax in enumerate(axes[row]):
            gt = batch["boxes"][i].to(boxes)
            iou = float(box_iou(boxes[i:i + 1].float(), gt.float()).max())
            show_localization(images[i], maps[i].cpu(), boxes[i].cpu(), gt.cpu(), iou=iou, ax=ax, title=name)
    figure.suptitle(f"held-out images: map, predicted box (green), GT box (red). Top: SAT's loc-token map, "
                    f"GT-known {rows[0][3]:.1f}%. Bottom: the same network's CAM, GT-known {rows[1][3]:.1f}%")
    figure.tight_layout()
    atomic_write(out, lambda f: figure.savefig(f, format="png", dpi=90))
    plt.close(figure)
    return out
