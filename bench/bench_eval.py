"""Benchmark: batched LocalizationEvaluator vs a per-image loop in the official style.

A CUB-sized run: 5,794 maps of 14x14 resized to 224x224, 100 thresholds (0.00..0.99), one or two
GT boxes per image. Side by side in one run:

- batched on the GPU (label propagation), when CUDA is present;
- batched on the CPU (numba component trees);
- the official style on the CPU: one image and one threshold at a time (SAT: scipy label +
  largest component, as evaluator.py with skimage; wsoleval: cv2.findContours as evaluation.py,
  when cv2 is installed), timed on a subset and scaled to the full set.

Prints seconds, the speed-up ratios, and peak memory for a quarter and the whole of the set (it
must not grow with the set). Run from the repository root:

    OMP_NUM_THREADS=1 python bench/bench_eval.py             # full CUB-sized run
    OMP_NUM_THREADS=1 python bench/bench_eval.py --images 512 --loop-images 8   # quick
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np
import torch
from scipy import ndimage

from satlib.evaluation import LocalizationEvaluator, normalize_maps

THRESHOLDS = [i / 100 for i in range(100)]  # --thresholds 1000 gives 0.000..0.999
SIZE = 224


def synthetic_maps(count: int, seed: int = 0, grid: int = 14) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Smooth attention-like maps (1-4 Gaussian blobs + noise) and GT boxes around the main blob."""
    gen = torch.Generator().manual_seed(seed)
    rows = torch.arange(grid).view(1, 1, grid, 1).float()
    cols = torch.arange(grid).view(1, 1, 1, grid).float()
    centres = torch.rand(count, 4, 2, generator=gen) * grid
    spread = 0.8 + 2.5 * torch.rand(count, 4, 1, 1, generator=gen)
    weight = torch.rand(count, 4, 1, 1, generator=gen) * (torch.rand(count, 4, 1, 1, generator=gen) < 0.6)
    weight[:, 0] = 1.0
    blobs = torch.exp(-((rows - centres[..., 0, None, None]) ** 2 + (cols - centres[..., 1, None, None]) ** 2)
                      / (2 * spread ** 2))
    maps = (weight * blobs).sum(1) + 0.05 * torch.rand(count, grid, grid, generator=gen)
    scale = SIZE / grid
    boxes = []
    for i in range(count):
        cy, cx = (centres[i, 0] * scale).tolist()
        half = float(spread[i, 0, 0, 0]) * scale * 1.5
        box = [max(0.0, cx - half), max(0.0, cy - half), min(SIZE - 1.0, cx + half), min(SIZE - 1.0, cy + half)]
        extra = [[0.0, 0.0, 40.0, 40.0]] if i % 5 == 0 else []
        boxes.append(torch.tensor([[int(v) for v in box]] + extra, dtype=torch.float32))
    return maps, boxes


def run_batched(maps, boxes, protocol: str, device: str, batch: int,
                backend: str | None = None) -> tuple[float, dict]:
    """Wall seconds and metrics of the batched evaluator (CPU seconds in `CPU_SECONDS`).

    `backend` defaults to label propagation on CUDA and the numba component trees on the CPU.
    """
    backend = backend or ("propagate" if device == "cuda" else "union_find")
    evaluator = LocalizationEvaluator(thresholds=THRESHOLDS, image_size=SIZE, protocol=protocol, backend=backend)
    if device == "cuda":
        torch.cuda.synchronize()
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(maps), batch):
        evaluator.update(maps[i:i + batch].to(device), boxes[i:i + batch])
    result = evaluator.compute()
    CPU_SECONDS[device] = time.process_time() - cpu
    return time.perf_counter() - start, result


CPU_SECONDS: dict[str, float] = {}


def _iou(a, b) -> float:
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0]) + 1) * max(0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
    area = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    return inter / float(area - inter)


def loop_sat(maps, boxes) -> tuple[float, np.ndarray]:
    """evaluator.py's inner loop: per image normalise + resize, per threshold label + largest + IoU."""
    eight = np.ones((3, 3), dtype=bool)
    hits = np.zeros(len(THRESHOLDS))
    start, CPU_SECONDS["loop"] = time.perf_counter(), time.process_time()
    for m, gt in zip(maps, boxes):
        norm = normalize_maps(m[None], SIZE, "sat")[0].numpy()  # the official: numpy min-max + cv2.resize
        gt = gt.tolist()
        for j, t in enumerate(THRESHOLDS):
            labels, count = ndimage.label(norm > np.float32(t), eight)
            if count == 0:
                box = [0, 0, SIZE, SIZE]
            else:
                sizes = np.bincount(labels.ravel())
                sizes[0] = 0
                rows, cols = np.nonzero(labels == int(np.argmax(sizes)))
                box = [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
            hits[j] += max(_iou(box, g) for g in gt) >= 0.5
    CPU_SECONDS["loop"] = time.process_time() - CPU_SECONDS["loop"]
    return time.perf_counter() - start, hits


def loop_wsoleval(maps, boxes) -> tuple[float, np.ndarray] | None:
    """evaluation.py's BoxEvaluator.accumulate with cv2, per image and threshold: the largest
    contour (MaxBoxAcc) and every contour (MaxBoxAccV2) from one findContours call."""
    try:
        import cv2
    except ImportError:
        return None
    hits = np.zeros(len(THRESHOLDS))
    start, CPU_SECONDS["loop"] = time.perf_counter(), time.process_time()
    for m, gt in zip(maps, boxes):
        cam = cv2.resize(m.numpy(), (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)
        cam = np.zeros_like(cam) if cam.min() == cam.max() else (cam - cam.min()) / (cam - cam.min()).max()
        image = np.expand_dims((cam * 255).astype(np.uint8), 2)
        gt = np.asarray(gt.tolist())
        for j, t in enumerate(THRESHOLDS):
            _, binary = cv2.threshold(image, int(t * np.max(image)), 255, cv2.THRESH_BINARY)
            contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
            if len(contours) == 0:
                largest, every = [0, 0, 0, 0], [[0, 0, 0, 0]]
            else:
                every = []
                for contour in contours:
                    x, y, w, h = cv2.boundingRect(contour)
                    every.append([x, y, min(x + w, SIZE - 1), min(y + h, SIZE - 1)])
                largest = every[max(range(len(contours)), key=lambda k: cv2.contourArea(contours[k]))]
            hits[j] += max(_iou(largest, g) for g in gt) >= 0.5
            max(_iou(b, g) for b in every for g in gt)  # MaxBoxAccV2's any-contour IoU
    CPU_SECONDS["loop"] = time.process_time() - CPU_SECONDS["loop"]
    return time.perf_counter() - start, hits


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def memory_probe(count: int, protocol: str, device: str, batch: int) -> int:
    """Peak memory (bytes) of evaluating `count` maps: CUDA max allocated, or on the CPU the rise
    of the resident set's high-water mark (VmHWM) over the warmed-up process (Linux)."""
    maps, boxes = synthetic_maps(count)
    run_batched(maps[:2], boxes[:2], protocol, device, 2)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        run_batched(maps, boxes, protocol, device, batch)
        return torch.cuda.max_memory_allocated()
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # reset the high-water mark to the current resident set
    baseline = _status_kb("VmRSS")
    run_batched(maps, boxes, protocol, device, batch)
    return (_status_kb("VmHWM") - baseline) * 1024


def peak_memory(count: int, protocol: str, device: str, batch: int) -> int:
    """`memory_probe` in a fresh process, so earlier work does not set the peak."""
    command = [sys.executable, __file__, "--probe", str(count), "--protocols", protocol, "--device", device,
               "--batch", str(batch), "--thresholds", str(len(THRESHOLDS))]
    return int(subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=5794)
    parser.add_argument("--loop-images", type=int, default=24, help="subset timed with the per-image loop")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--protocols", default="sat,wsoleval")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (and numba map threads)")
    parser.add_argument("--thresholds", type=int, default=100, help="how many thresholds, i / count")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--probe", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    THRESHOLDS[:] = [i / args.thresholds for i in range(args.thresholds)]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() and args.device != "cpu" else [])
    if args.device == "cuda":
        devices = ["cuda"]
    if args.probe:
        print(memory_probe(args.probe, args.protocols, devices[-1], args.batch))
        return

    maps, boxes = synthetic_maps(args.images)
    L = min(args.loop_images, args.images)
    print(f"{args.images} maps 14x14 -> {SIZE}x{SIZE}, {len(THRESHOLDS)} thresholds, batch {args.batch}, "
          f"torch threads {args.threads}; per-image loop timed on {L} images and scaled")
    run_batched(maps[:4], boxes[:4], "sat", "cpu", 4)  # compile / load the numba kernels
    run_batched(maps[:4], boxes[:4], "wsoleval", "cpu", 4)
    report = {}
    for protocol in args.protocols.split(","):
        loop = (loop_sat if protocol == "sat" else loop_wsoleval)(maps[:L], boxes[:L])
        loop_cpu = CPU_SECONDS.get("loop", 0.0) * args.images / L
        row = {}
        for device in devices:
            if device == "cuda":
                run_batched(maps[:8], boxes[:8], protocol, device, 8)  # warm-up
            seconds, result = run_batched(maps, boxes, protocol, device, args.batch)
            row[device], row[f"{device}_cpu_s"] = seconds, CPU_SECONDS[device]
            _, subset = run_batched(maps[:L], boxes[:L], protocol, device, args.batch)
            if loop is not None:  # same GT-known at the same thresholds as the loop on the subset
                row[f"{device}_agrees_with_loop"] = bool(subset["maxboxacc"] == 100.0 * loop[1].max() / L)
            if not args.no_memory:
                row[f"{device}_peak_mb"] = [round(peak_memory(n, protocol, device, args.batch) / 2**20, 1)
                                            for n in (args.images // 4, args.images)]
        line = f"[{protocol}] batched " + ", ".join(f"{d} {row[d]:.1f} s" for d in devices)
        if loop is not None:
            row["loop_s"] = loop[0] * args.images / L
            line += f" | per-image loop {row['loop_s']:.1f} s (scaled from {loop[0]:.2f} s on {L})"
            line += " | speed-up " + ", ".join(f"{d} {row['loop_s'] / row[d]:.1f}x" for d in devices)
            row["loop_cpu_s"] = loop_cpu
            cpu = row["cpu_cpu_s"]
            line += f"\n    CPU seconds: loop {loop_cpu:.1f}, cpu {cpu:.1f} -> {loop_cpu / cpu:.1f}x"
        else:
            line += " | per-image loop skipped (needs cv2)"
        print(line)
        for device in devices:
            if f"{device}_peak_mb" in row:
                quarter, whole = row[f"{device}_peak_mb"]
                kind = "CUDA max allocated" if device == "cuda" else "peak RSS rise (VmHWM) over the warm process"
                print(f"    {device} {kind}: {quarter} MB for {args.images // 4} maps, {whole} MB for {args.images}")
            if f"{device}_agrees_with_loop" in row:
                agrees = row[f"{device}_agrees_with_loop"]
                print(f"    {device} MaxBoxAcc on the loop's subset equals the loop's: {agrees}")
        report[protocol] = row
    print(json.dumps(report))


if __name__ == "__main__":
    main()
