"""Section "eval": the batched evaluator on the device vs the per-image loop on a CPU subset (bench_eval)."""

from __future__ import annotations

import torch

import bench_eval
from suite.harness import Sizes, Suite


def configure_eval(sizes: Sizes) -> None:
    """Point bench_eval's module-level thresholds and image side at this run's sizes."""
    bench_eval.THRESHOLDS[:] = [i / sizes.eval_thresholds for i in range(sizes.eval_thresholds)]
    bench_eval.SIZE = sizes.eval_side


def section_eval(suite: Suite, results: dict) -> None:
    """Batched evaluator on the device vs the official-style per-image loop on a CPU subset."""
    s = suite.sizes
    configure_eval(s)
    maps, boxes = bench_eval.synthetic_maps(s.eval_maps)
    results.update(maps=s.eval_maps, thresholds=s.eval_thresholds, side=s.eval_side, batch=s.eval_batch,
                   loop_maps=s.eval_loop_maps, protocols={})
    for share, protocol in ((0.45, "sat"), (0.8, "wsoleval")):
        results["protocols"][protocol] = row = {}
        eval_protocol(suite, protocol, maps, boxes, share, row)


def eval_protocol(suite: Suite, protocol: str, maps: torch.Tensor, boxes: list, share: float, row: dict) -> None:
    """One protocol: the loop on `eval_loop_maps` maps, then as many maps as fit in `share` of the time left."""
    s = suite.sizes
    device, n_loop = suite.device.type, s.eval_loop_maps
    loop = (bench_eval.loop_sat if protocol == "sat" else bench_eval.loop_wsoleval)(maps[:n_loop], boxes[:n_loop])
    batched = lambda count: bench_eval.run_batched(maps[:count], boxes[:count], protocol, device,  # noqa: E731
                                                   s.eval_batch, backend="propagate")
    batched(min(8, len(maps)))  # warm-up: kernels, allocator
    probe_s, _ = batched(min(s.eval_batch, len(maps)))
    per_map = probe_s / min(s.eval_batch, len(maps))
    count = min(len(maps), max(min(s.eval_batch, len(maps)), int(share * suite.remaining() / per_map)))
    suite.reset_peak()
    seconds, metrics = batched(count)
    row.update(maps=count, batched_s=seconds, batched_ms_per_map=1e3 * seconds / count,
               batched_full_s=seconds / count * len(maps), peak_mb=suite.peak_mb(), maxboxacc=metrics["maxboxacc"])
    if loop is None:
        row["loop"] = "skipped: needs cv2"
        return
    _, subset = batched(n_loop)
    loop_per_map = loop[0] / n_loop
    row.update(loop_ms_per_map=1e3 * loop_per_map, loop_full_s=loop_per_map * len(maps),
               speedup=loop_per_map / (seconds / count),
               agrees_with_loop=bool(subset["maxboxacc"] == 100.0 * loop[1].max() / n_loop))
    print(f"   {protocol}: {row['batched_ms_per_map']:.2f} ms/map batched ({count} maps), loop "
          f"{row['loop_ms_per_map']:.1f} ms/map -> {row['speedup']:.0f}x", flush=True)
