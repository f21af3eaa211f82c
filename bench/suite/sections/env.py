"""Section "env": device, versions, and the two ceilings (bf16 matmul, device copy) measured on this card."""

from __future__ import annotations

import platform
import subprocess

import timm
import torch

import satlib
from satlib.data.loader import cpu_count

from suite.harness import REPO, Suite, seconds_per_call

# Dense bf16 tensor-core peaks from the vendors' datasheets (TFLOP/s), matched in order against the name.
DATASHEET_BF16 = (("H100 PCIe", 756.0), ("H100", 989.0), ("H200", 989.0), ("GH200", 989.0), ("A100", 312.0),
                  ("L40S", 362.0), ("L4", 121.0), ("A10", 125.0))


def matmul_tflops(device: torch.device, side: int, dtype: torch.dtype, reps: int = 10) -> float:
    """Achieved TFLOP/s of a side^3 matrix product on random data."""
    a = torch.randn(side, side, device=device, dtype=dtype)
    b = torch.randn(side, side, device=device, dtype=dtype)
    seconds = seconds_per_call(lambda: a @ b, reps, device, warmup=3)
    return 2 * side**3 / seconds / 1e12


def copy_tb_s(device: torch.device, mib: int, reps: int = 10) -> float:
    """Device-to-device copy bandwidth in TB/s, counting bytes read plus bytes written."""
    src = torch.rand(mib * 2**18, device=device)
    dst = torch.empty_like(src)
    seconds = seconds_per_call(lambda: dst.copy_(src), reps, device, warmup=3)
    return 2 * src.numel() * 4 / seconds / 1e12


def datasheet_bf16(name: str) -> float | None:
    return next((peak for key, peak in DATASHEET_BF16 if key in name), None)


def git_commit() -> str | None:
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def section_env(suite: Suite, results: dict) -> None:
    """Device, versions, and the two ceilings (bf16 matmul, device copy) measured on this card."""
    s = suite.sizes
    results.update(python=platform.python_version(), torch=torch.__version__, timm=timm.__version__,
                   satlib=satlib.__version__, cuda=torch.version.cuda, cpus=cpu_count(), git=git_commit())
    if suite.cuda:
        props = torch.cuda.get_device_properties(suite.device)
        results.update(device=props.name, capability=f"{props.major}.{props.minor}",
                       memory_gib=round(props.total_memory / 2**30, 1), multiprocessors=props.multi_processor_count,
                       datasheet_bf16_tflops=datasheet_bf16(props.name))
        results["matmul_bf16_tflops"] = matmul_tflops(suite.device, s.matmul_side, torch.bfloat16)
    else:
        results["device"] = f"CPU ({cpu_count()} cores, {torch.get_num_threads()} torch threads)"
        results["matmul_fp32_tflops"] = matmul_tflops(suite.device, s.matmul_side, torch.float32)
    results["copy_tb_s"] = copy_tb_s(suite.device, s.copy_mib)
    print(f"   {results['device']}, torch {torch.__version__}", flush=True)
