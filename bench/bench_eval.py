"""Benchmark: the batched LocalizationEvaluator on each path vs a per-image loop in the official style.

Synthetic attention-like maps (14x14 resized to 224x224, 1-4 Gaussian blobs + noise), 100
thresholds (0.00..0.99), one or two GT boxes per image; by default a CUB-sized set (5,794 maps)
and an ImageNet-sized set (50,000 maps). Side by side in one run, for each protocol and set size:

- the per-image loop in the official style on the CPU, one image and one threshold at a time
  (SAT: scipy label + largest component, as evaluator.py with skimage; wsoleval: cv2.findContours
  as evaluation.py, when cv2 is installed), timed on a subset and scaled to the set;
- the batched evaluator on each path: "cpu" (CPU maps: numba component trees), and with CUDA
  "propagate" (label propagation on the GPU) and "host" (levels made on the GPU, the component
  trees on the host cores, overlapped chunk by chunk; `satlib.evaluation.extents`);

as seconds and as ratios loop / path, in wall-clock and in CPU seconds, for each number of torch
threads in `--threads` (the evaluator splits maps over them; the loop, like the official code,
runs on one thread, cv2's included). Every figure is the best of `--repeats` rounds in which the
loop, the paths and the thread counts take turns, so that the load of a shared machine weighs on
all of them alike; the load average is printed with them. Peak memory of each path for a quarter
and for all of the largest set, in fresh processes (it must not grow with the set). Run from the
repository root:

    python bench/bench_eval.py --threads 1,2                                  # both sets
    python bench/bench_eval.py --images 512 --loop-images 8 --no-memory      # quick
    python bench/bench_eval.py --images 1000 --threads 1,2 --against 1029259 --rounds 3

`--against REV` times satlib at git REV and this checkout side by side instead: each round runs this
script once on each (fresh processes, the default environment, in turns), and the best of the rounds
is printed for both, with CPU seconds (threads that spin burn CPU without progress) and the 2-thread
speed-up over 1 thread.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from satlib.evaluation import LocalizationEvaluator, normalize_maps

THRESHOLDS = [i / 100 for i in range(100)]  # --thresholds 1000 gives 0.000..0.999
SIZE = 224
SETS = (5794, 50000)  # CUB's test set, ImageNet's validation set


@dataclass(frozen=True)
class Path:
    """One way to run the batched evaluator: where the maps live and which components backend runs."""

    name: str
    device: str
    backend: str


PATHS = {"cpu": Path("cpu", "cpu", "union_find"), "propagate": Path("propagate", "cuda", "propagate"),
         "host": Path("host", "cuda", "host")}


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


def run_batched(maps, boxes, protocol: str, device: str, batch: int, backend: str = "auto",
                threads: int | None = None) -> tuple[float, float, dict]:
    """Wall seconds, CPU seconds of this process and metrics of the batched evaluator, `batch` maps
    per update, on `threads` torch threads (default: as set)."""
    if threads is not None:
        torch.set_num_threads(threads)
    evaluator = LocalizationEvaluator(thresholds=THRESHOLDS, image_size=SIZE, protocol=protocol, backend=backend)
    if device == "cuda":
        torch.cuda.synchronize()
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(maps), batch):
        evaluator.update(maps[i:i + batch].to(device), boxes[i:i + batch])
    result = evaluator.compute()
    return time.perf_counter() - start, time.process_time() - cpu, result


def _iou(a, b) -> float:
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0]) + 1) * max(0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
    area = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    return inter / float(area - inter)


def loop_sat(maps, boxes) -> tuple[float, float, np.ndarray]:
    """evaluator.py's inner loop: per image normalise + resize, per threshold label + largest + IoU.
    Returns wall seconds, CPU seconds and hits per threshold."""
    eight = np.ones((3, 3), dtype=bool)
    hits = np.zeros(len(THRESHOLDS))
    start, cpu = time.perf_counter(), time.process_time()
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
    return time.perf_counter() - start, time.process_time() - cpu, hits


def loop_wsoleval(maps, boxes) -> tuple[float, float, np.ndarray] | None:
    """evaluation.py's BoxEvaluator.accumulate with cv2, per image and threshold: the largest
    contour (MaxBoxAcc) and every contour (MaxBoxAccV2) from one findContours call."""
    try:
        import cv2
    except ImportError:
        return None
    hits = np.zeros(len(THRESHOLDS))
    start, cpu = time.perf_counter(), time.process_time()
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
    return time.perf_counter() - start, time.process_time() - cpu, hits


LOOPS = {"sat": loop_sat, "wsoleval": loop_wsoleval}


def one_thread_loop(protocol: str, maps, boxes) -> tuple[float, float, np.ndarray] | None:
    """The protocol's per-image loop on one thread (torch's and cv2's), as the official code runs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        import cv2
        cv2_threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
    except ImportError:
        cv2 = None
    try:
        return LOOPS[protocol](maps, boxes)
    finally:
        torch.set_num_threads(threads)
        if cv2 is not None:
            cv2.setNumThreads(cv2_threads)


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def memory_probe(count: int, protocol: str, path: Path, batch: int) -> int:
    """Peak memory (bytes) of evaluating `count` maps: CUDA max allocated, or on the CPU the rise
    of the resident set's high-water mark (VmHWM) over the warmed-up process (Linux)."""
    maps, boxes = synthetic_maps(count)
    run_batched(maps[:2], boxes[:2], protocol, path.device, 2, path.backend)
    if path.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        run_batched(maps, boxes, protocol, path.device, batch, path.backend)
        return torch.cuda.max_memory_allocated()
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # reset the high-water mark to the current resident set
    baseline = _status_kb("VmRSS")
    run_batched(maps, boxes, protocol, path.device, batch, path.backend)
    return (_status_kb("VmHWM") - baseline) * 1024


def peak_memory(count: int, protocol: str, path: Path, batch: int, threads: int) -> int:
    """`memory_probe` in a fresh process, so earlier work does not set the peak."""
    command = [sys.executable, __file__, "--probe", str(count), "--protocols", protocol, "--paths", path.name,
               "--batch", str(batch), "--thresholds", str(len(THRESHOLDS)), "--threads", str(threads)]
    return int(subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])


def load_average() -> float:
    """The machine's 1-minute load average (0 where the OS does not say)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


def bench_protocol(protocol: str, maps, boxes, sizes: list[int], paths: list[Path], threads: list[int],
                   args) -> dict:
    """One protocol: the loop on a subset and every path at every thread count on every set size,
    best of `args.repeats` interleaved rounds; ratios loop / path. Keys: row[size][path][threads]."""
    L = min(args.loop_images, len(maps))
    for path in paths:  # compile the numba kernels, start CUDA
        run_batched(maps[:8], boxes[:8], protocol, path.device, 8, path.backend)
    best: dict = {}

    def keep(key, wall: float, cpu: float) -> None:
        old = best.get(key, (float("inf"), float("inf")))
        best[key] = (min(old[0], wall), min(old[1], cpu))

    loop_hits = None
    for _ in range(args.repeats):
        loop = one_thread_loop(protocol, maps[:L], boxes[:L])
        if loop is not None:
            keep("loop", loop[0], loop[1])
            loop_hits = loop[2]
        for size in sizes:
            for path in paths:
                for n in threads:
                    wall, cpu, _ = run_batched(maps[:size], boxes[:size], protocol, path.device, args.batch,
                                               path.backend, threads=n)
                    keep((size, path.name, n), wall, cpu)
    row: dict = {"loop_images": L}
    if loop_hits is not None:
        row["loop_s_per_map"], row["loop_cpu_s_per_map"] = (v / L for v in best["loop"])
        row["agrees_with_loop"] = {}
        for path in paths:  # same GT-known at the same thresholds as the loop, on its subset
            _, _, subset = run_batched(maps[:L], boxes[:L], protocol, path.device, args.batch, path.backend)
            row["agrees_with_loop"][path.name] = bool(subset["maxboxacc"] == 100.0 * loop_hits.max() / L)
    for size in sizes:
        entry = row[str(size)] = {}
        if loop_hits is not None:
            entry["loop_s"], entry["loop_cpu_s"] = row["loop_s_per_map"] * size, row["loop_cpu_s_per_map"] * size
        for path in paths:
            entry[path.name] = {}
            for n in threads:
                wall, cpu = best[(size, path.name, n)]
                x = entry[path.name][str(n)] = {"s": wall, "cpu_s": cpu}
                if loop_hits is not None:
                    x.update(speedup=entry["loop_s"] / wall, cpu_speedup=entry["loop_cpu_s"] / cpu)
    if not args.no_memory:
        top = max(sizes)
        row["peak_mb"] = {path.name: [round(peak_memory(n, protocol, path, args.batch, threads[0]) / 2**20, 1)
                                      for n in (top // 4, top)] for path in paths}
    return row


def print_protocol(protocol: str, row: dict, sizes: list[int], paths: list[Path], threads: list[int]) -> None:
    """The protocol's figures: per set size, the loop and every path at every thread count, seconds and ratios."""
    L = row["loop_images"]
    for size in sizes:
        entry = row[str(size)]
        if "loop_s" in entry:
            print(f"[{protocol}] {size:,} maps: per-image loop {entry['loop_s']:.1f} s "
                  f"({entry['loop_cpu_s']:.1f} CPU s; 1 thread, scaled from {L} maps)")
        else:
            print(f"[{protocol}] {size:,} maps: per-image loop skipped (needs cv2)")
        for path in paths:
            for n in threads:
                x = entry[path.name][str(n)]
                line = f"    {path.name}, {n} thread{'s' if n > 1 else ''}: {x['s']:.2f} s ({x['cpu_s']:.2f} CPU s)"
                if "speedup" in x:
                    line += f" -> {x['speedup']:.1f}x the loop ({x['cpu_speedup']:.1f}x in CPU s)"
                print(line)
    for name, agrees in row.get("agrees_with_loop", {}).items():
        print(f"    {name}: MaxBoxAcc on the loop's subset equals the loop's: {agrees}")
    for name, (quarter, whole) in row.get("peak_mb", {}).items():
        kind = "CUDA max allocated" if PATHS[name].device == "cuda" else "peak RSS rise (VmHWM) over the warm process"
        print(f"    {name}, {threads[0]} thread(s), {kind}: {quarter} MB for {max(sizes) // 4:,} maps, "
              f"{whole} MB for {max(sizes):,}")


def compare_versions(args) -> None:
    """`--against REV`: this script on satlib at REV and on this checkout, one process each per round, in turns."""
    import tempfile
    from pathlib import Path as FilePath

    root = FilePath(__file__).resolve().parent.parent
    passed = ["--images", args.images, "--threads", args.threads, "--protocols", args.protocols, "--thresholds",
              str(args.thresholds), "--loop-images", str(args.loop_images), "--batch", str(args.batch),
              "--repeats", "1", "--no-memory"]
    with tempfile.TemporaryDirectory() as tmp:
        old = FilePath(tmp) / "old"
        old.mkdir()
        archive = subprocess.run(["git", "archive", args.against, "satlib"], cwd=root, check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
        trees = {f"old ({args.against})": str(old), "new (this checkout)": str(root)}
        best: dict = {}
        for _ in range(args.rounds):
            for name, tree in trees.items():
                env = {**os.environ, "PYTHONPATH": tree}
                result = subprocess.run([sys.executable, __file__, *passed], env=env, check=True,
                                        capture_output=True, text=True)
                keep_best(best.setdefault(name, {}), json.loads(result.stdout.strip().splitlines()[-1]))
    print(f"{args.images} maps, {args.thresholds} thresholds, best of {args.rounds} rounds in turns; "
          f"default environment (OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}); "
          f"load average {load_average():.2f}")
    for protocol in args.protocols.split(","):
        for name, report in best.items():
            row = report[protocol][int(args.images.split(",")[0])]["cpu"]
            one, two = row["1"], row.get("2")
            text = f"[{protocol}] {name}: 1 thread {one['s']:.2f} s ({one['cpu_s']:.2f} CPU s)"
            if two:
                text += (f", 2 threads {two['s']:.2f} s ({two['cpu_s']:.2f} CPU s): {one['s'] / two['s']:.2f}x "
                         f"over 1 thread; loop {report[protocol].get('loop_s_per_map', 0) * 1e3:.2f} ms/map")
            print(text)
    print(json.dumps(best))


def keep_best(best: dict, report: dict) -> None:
    """Fold one bench_eval report into `best`: per protocol, set size and thread count, the lowest seconds."""
    for protocol, row in report.items():
        if not isinstance(row, dict):
            continue
        for size, entry in row.items():
            if not size.isdigit():
                continue
            kept = best.setdefault(protocol, {"loop_s_per_map": row.get("loop_s_per_map", 0.0)})
            for threads, x in entry["cpu"].items():
                old = kept.setdefault(int(size), {}).setdefault("cpu", {}).setdefault(threads, dict(x))
                old["s"], old["cpu_s"] = min(old["s"], x["s"]), min(old["cpu_s"], x["cpu_s"])
            kept["loop_s_per_map"] = min(kept["loop_s_per_map"] or float("inf"), row.get("loop_s_per_map", 0.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", default=",".join(map(str, SETS)), help="comma-separated set sizes")
    parser.add_argument("--loop-images", type=int, default=64, help="subset timed with the per-image loop")
    parser.add_argument("--batch", type=int, default=256, help="maps per evaluator update")
    parser.add_argument("--protocols", default="sat,wsoleval")
    parser.add_argument("--paths", default="auto", help="comma-separated subset of cpu,propagate,host "
                                                        "(auto: cpu, and with CUDA propagate and host)")
    parser.add_argument("--threads", default="1", help="comma-separated torch thread counts (numba splits maps "
                                                         "over them too); the loop always runs on one")
    parser.add_argument("--thresholds", type=int, default=100, help="how many thresholds, i / count")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds; the best of each is kept")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--probe", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--against", help="a git commit: time its satlib and this checkout side by side")
    parser.add_argument("--rounds", type=int, default=3, help="with --against: turns of old and new")
    args = parser.parse_args()
    if args.against:
        compare_versions(args)
        return
    threads = [int(n) for n in args.threads.split(",")]
    torch.set_num_threads(threads[0])
    THRESHOLDS[:] = [i / args.thresholds for i in range(args.thresholds)]
    names = ["cpu"] + (["propagate", "host"] if torch.cuda.is_available() else [])
    paths = [PATHS[name] for name in (names if args.paths == "auto" else args.paths.split(","))]
    if args.probe:
        print(memory_probe(args.probe, args.protocols, paths[0], args.batch))
        return
    sizes = [int(n) for n in args.images.split(",")]
    maps, boxes = synthetic_maps(max(sizes))
    print(f"maps 14x14 -> {SIZE}x{SIZE}, {len(THRESHOLDS)} thresholds, batch {args.batch}, torch threads "
          f"{threads}, paths {[p.name for p in paths]}, best of {args.repeats} interleaved rounds; "
          f"load average {load_average():.2f}")
    report: dict = {"threads": threads, "thresholds": len(THRESHOLDS), "load_average": [load_average()]}
    for protocol in args.protocols.split(","):
        report[protocol] = row = bench_protocol(protocol, maps, boxes, sizes, paths, threads, args)
        print_protocol(protocol, row, sizes, paths, threads)
    report["load_average"].append(load_average())
    print(f"load average at the end {report['load_average'][-1]:.2f}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
