"""torch.profiler results read as per-step figures: top ops and kernels, kernel time by kind, syncs, launches."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path
from typing import BinaryIO

from satlib.files import atomic_write

# CPU-side events that block the host until the device catches up (or mark an op that does).
SYNC_EVENTS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize",
               "aten::_local_scalar_dense", "aten::item", "aten::equal", "aten::nonzero")
LAUNCH_EVENTS = ("cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx")
KERNEL_KINDS = (("attention", ("flash", "fmha", "attention")),
                ("matmul", ("gemm", "xmma", "nvjet", "cutlass", "matmul", "cublas")),
                ("copy", ("memcpy", "memset")),
                ("norm/softmax", ("layer_norm", "layernorm", "softmax", "batch_norm")),
                ("scatter/gather/reduce", ("scatter", "gather", "reduce", "index", "pool", "sort", "scan")),
                ("elementwise", ("elementwise", "vectorized", "unrolled", "pointwise", "triton")))


def _us(event, name: str) -> float:
    """An event's time field in microseconds (device_* names, or the older cuda_* ones)."""
    for attr in (name, name.replace("device", "cuda")):
        value = getattr(event, attr, None)
        if value is not None:
            return float(value)
    return 0.0


def kernel_kind(name: str) -> str:
    low = name.lower()
    return next((kind for kind, keys in KERNEL_KINDS if any(k in low for k in keys)), "other")


def summarize_profile(events, steps: int, wall_s: float, cuda: bool, top: int = 12) -> dict:
    """Per-step figures of a profile: top ops and kernels, kernel-time shares, host syncs, launches."""
    rows = [{"name": e.key, "calls": e.count, "self_device_us": _us(e, "self_device_time_total"),
             "self_cpu_us": float(e.self_cpu_time_total), "kernel": str(getattr(e, "device_type", "")).endswith("CUDA")}
            for e in events]
    kernels = [r for r in rows if r["kernel"]]
    kernel_us = sum(r["self_device_us"] for r in kernels)
    key = "self_device_us" if cuda else "self_cpu_us"
    ops = sorted((r for r in rows if not r["kernel"] and r["name"].startswith("aten::")), key=lambda r: -r[key])
    shares: dict[str, float] = {}
    for r in kernels:
        share = r["self_device_us"] / kernel_us if kernel_us else 0.0
        shares[kernel_kind(r["name"])] = shares.get(kernel_kind(r["name"]), 0.0) + share
    per_step = lambda r: {"name": r["name"][:120], "calls": r["calls"] / steps,  # noqa: E731
                          "self_device_ms": r["self_device_us"] / 1e3 / steps,
                          "self_cpu_ms": r["self_cpu_us"] / 1e3 / steps}
    count = lambda names: sum(r["calls"] for r in rows if r["name"] in names) / steps  # noqa: E731
    return {"steps": steps, "wall_ms": 1e3 * wall_s / steps, "kernel_ms": kernel_us / 1e3 / steps,
            "gpu_busy": kernel_us / 1e6 / wall_s if cuda and kernels and wall_s > 0 else None,
            "kernels_recorded": len(kernels),  # 0 on CUDA: the profiler saw no kernels (CUPTI missing?)
            "kernel_share": dict(sorted(shares.items(), key=lambda kv: -kv[1])),
            "maybe_sync_ops": {r["name"]: r["calls"] / steps for r in rows if r["name"] in SYNC_EVENTS},
            "host_syncs": count({"cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize"}),
            "pageable_copies": sum(r["calls"] for r in kernels if "Pageable" in r["name"]) / steps,
            "launches": count(LAUNCH_EVENTS),
            "top_ops": [per_step(r) for r in ops[:top]],
            "top_kernels": [per_step(r) for r in sorted(kernels, key=lambda r: -r["self_device_us"])[:top // 2]]}


def save_trace(prof, path: Path, limit_mb: float = 15.0) -> str | None:
    """The profile as a gzipped Chrome trace next to the report (dropped over `limit_mb`)."""
    raw = path.with_suffix("")
    try:
        prof.export_chrome_trace(str(raw))
        atomic_write(path, lambda f: _gzip_copy(raw, f))
    finally:
        raw.unlink(missing_ok=True)
    if path.stat().st_size > limit_mb * 2**20:
        path.unlink()
        return None
    return path.name


def _gzip_copy(src: Path, out: BinaryIO) -> None:
    with open(src, "rb") as raw, gzip.GzipFile(filename=src.name, mode="wb", fileobj=out) as packed:
        shutil.copyfileobj(raw, packed)
