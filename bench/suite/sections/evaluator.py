"""Section "eval": the batched evaluator on both device paths vs the per-image loop on a CPU subset (bench_eval).

Rows at the thresholds a run sweeps: SAT's protocol at the recipes' own counts (CUB's 4: 0.3-0.45,
ImageNet's 1: 0.3) and at 100 (0.00-0.99), wsoleval's at its 100. Label propagation's cost grows
with the thresholds and the trees' does not, so which path wins depends on the count. In each row
the two paths side by side: "propagate" (label propagation on the device) and "host" (levels on the
device, component trees on the host cores, overlapped). Each runs as many maps of the CUB-sized set
as fit in its share of the section's time; its rate gives the figures for the CUB-sized (5,794) and
ImageNet-sized (50,000) sets, as ratios to the official-style loop at the same thresholds. `faster`
says which path won: the evidence for `resolve_backend`'s choice on CUDA. The host path needs the
numba trees compiled (the suite's warm-up, `suite/warm.py`): until they are, it is skipped and
says so, rather than spend the section compiling.
"""

from __future__ import annotations

import torch

from satlib.evaluation import SAT_THRESHOLDS
from satlib.evaluation.components import resolve_backend

import bench_eval
from suite.harness import Sizes, Suite

PATHS = ("propagate", "host")


def eval_rows(sizes: Sizes) -> list[tuple[str, str, list[float]]]:
    """(row name, protocol, thresholds): the recipes' sweeps first, then 100 thresholds."""
    many = [i / sizes.eval_thresholds for i in range(sizes.eval_thresholds)]
    return [("sat, CUB recipe", "sat", list(SAT_THRESHOLDS)), ("sat, ImageNet recipe", "sat", [0.3]),
            (f"sat, {len(many)} thresholds", "sat", many), (f"wsoleval, {len(many)} thresholds", "wsoleval", many)]


def configure_eval(sizes: Sizes, thresholds: list[float] | None = None) -> None:
    """Point bench_eval's module-level thresholds (default: `eval_thresholds` of them) and image side at this run."""
    bench_eval.THRESHOLDS[:] = thresholds or [i / sizes.eval_thresholds for i in range(sizes.eval_thresholds)]
    bench_eval.SIZE = sizes.eval_side


def section_eval(suite: Suite, results: dict) -> None:
    """Every row (`eval_rows`) on both device paths, CUB- and ImageNet-sized figures from the same rate."""
    s = suite.sizes
    configure_eval(s)
    maps, boxes = bench_eval.synthetic_maps(s.eval_maps)
    rows = eval_rows(s)
    results.update(maps=s.eval_maps, imagenet_maps=bench_eval.SETS[1], side=s.eval_side, batch=s.eval_batch,
                   loop_maps=s.eval_loop_maps, paths=list(PATHS), auto=resolve_backend("auto", suite.device),
                   host_threads=torch.get_num_threads(), rows={})
    for k, (name, protocol, thresholds) in enumerate(rows):
        configure_eval(s, thresholds)
        results["rows"][name] = row = {"protocol": protocol, "thresholds": len(thresholds)}
        eval_row(suite, protocol, maps, boxes, 1.0 / (len(rows) - k), row)
        print_row(name, row)


def eval_row(suite: Suite, protocol: str, maps: torch.Tensor, boxes: list, share: float, row: dict) -> None:
    """One row: the loop on `eval_loop_maps` maps, then each path on as many maps as fit in its part of
    `share` of the time left."""
    s = suite.sizes
    device, n_loop = suite.device.type, s.eval_loop_maps
    loop = bench_eval.LOOPS[protocol](maps[:n_loop], boxes[:n_loop])
    loop_per_map = None if loop is None else loop[0] / n_loop
    if loop_per_map is not None:
        row.update(loop_ms_per_map=1e3 * loop_per_map, loop_full_s=loop_per_map * len(maps),
                   loop_imagenet_s=loop_per_map * bench_eval.SETS[1])
    else:
        row["loop"] = "skipped: needs cv2"
    row["paths"] = paths = {}
    runnable = [p for p in PATHS if p == "propagate" or suite.numba_ready()]
    for k, backend in enumerate(runnable):
        def batched(count: int, backend: str = backend) -> tuple[float, float, dict]:
            return bench_eval.run_batched(maps[:count], boxes[:count], protocol, device, s.eval_batch, backend)

        batched(min(8, len(maps)))  # warm-up: kernels, allocator, page-locked buffers
        probe = min(s.eval_batch, len(maps))
        per_map = batched(probe)[0] / probe
        count = min(len(maps), max(probe, int(share * suite.remaining() / (len(runnable) - k) / per_map)))
        suite.reset_peak()
        seconds, cpu_s, metrics = batched(count)
        per_map = seconds / count
        x = paths[backend] = dict(maps=count, s=seconds, cpu_s=cpu_s, ms_per_map=1e3 * per_map,
                                  cub_s=per_map * len(maps), imagenet_s=per_map * bench_eval.SETS[1],
                                  peak_mb=suite.peak_mb(), maxboxacc=metrics["maxboxacc"])
        if loop is not None:
            _, _, subset = batched(n_loop)
            x.update(speedup=loop_per_map / per_map,
                     agrees_with_loop=bool(subset["maxboxacc"] == 100.0 * loop[2].max() / n_loop))
    for backend in PATHS:
        if backend not in paths:
            row.setdefault("skipped", {})[backend] = "numba kernels still compiling (suite/warm.py): not timed"
    row["faster"] = min(paths, key=lambda name: paths[name]["ms_per_map"])
    if len(paths) == len(PATHS):
        row["host_over_propagate"] = paths["propagate"]["ms_per_map"] / paths["host"]["ms_per_map"]
    # The path `backend="auto"` takes on this device, under the keys the report renders.
    auto = paths.get(resolve_backend("auto", suite.device), paths[row["faster"]])
    row.update(maps=auto["maps"], batched_s=auto["s"], batched_ms_per_map=auto["ms_per_map"],
               batched_full_s=auto["cub_s"], peak_mb=auto["peak_mb"], maxboxacc=auto["maxboxacc"])
    if loop is not None:
        row.update(speedup=auto["speedup"], agrees_with_loop=all(x["agrees_with_loop"] for x in paths.values()))


def print_row(name: str, row: dict) -> None:
    loop = f"; loop {row['loop_ms_per_map']:.2f} ms/map" if "loop_ms_per_map" in row else ""
    count = f"{row['thresholds']} threshold{'s' if row['thresholds'] > 1 else ''}"
    print(f"   {name} ({count}){loop}; faster: {row['faster']}", flush=True)
    for path, x in row["paths"].items():
        ratio = f" -> {x['speedup']:.3g}x the loop" if "speedup" in x else ""
        print(f"     {path}: {x['ms_per_map']:.3f} ms/map ({x['maps']} maps){ratio}; CUB-sized {x['cub_s']:.2f} s, "
              f"ImageNet-sized {x['imagenet_s']:.1f} s", flush=True)
    for path, why in row.get("skipped", {}).items():
        print(f"     {path}: {why}", flush=True)
