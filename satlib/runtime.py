"""Where a process runs and how: device, torchrun's process group, seeds and RNG state, autocast, threads.

Training, evaluation, prediction, the demo and the book all need these; none of them belongs to the
training loop. DDP as in nanoGPT: torchrun sets RANK/WORLD_SIZE/LOCAL_RANK, rank 0 is the master.
"""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn


@dataclass
class Dist:
    """Where this process sits: rank among world processes, and its device."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def master(self) -> bool:
        return self.rank == 0


def resolve_device(name: str = "auto") -> torch.device:
    """"auto" -> cuda when available, else cpu; anything else as torch.device understands it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} asked for, but no CUDA device is available")
    return device


def setup_distributed(device_name: str = "auto") -> Dist:
    """Join the process group torchrun describes (RANK/WORLD_SIZE/LOCAL_RANK), or run alone."""
    if int(os.environ.get("RANK", -1)) == -1:
        return Dist(device=resolve_device(device_name))
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = resolve_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Dist(rank, world, local_rank, device)


def allow_tf32(device: torch.device) -> None:
    """TF32 matmuls and convolutions on CUDA (Ampere and later); nothing on a CPU."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (every device)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Every RNG a training step draws from, in a form `weights_only` loading accepts."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": [torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what `rng_state` returned (after a round trip through a checkpoint)."""
    random.setstate(_as_tuples(state["python"]))
    torch.set_rng_state(state["torch"])
    keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuples(value):
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def gather_rng_states(ddp: Dist) -> list[dict]:
    """Every rank's `rng_state()` in rank order, so each rank resumes its own stream."""
    state = rng_state()
    if not ddp.enabled:
        return [state]
    states = [None] * ddp.world
    dist.all_gather_object(states, state)
    return states


def bf16_autocast(device: torch.device, *, enabled: bool = True) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when `enabled` (train.amp); a no-op context on a CPU."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                          enabled=enabled and device.type == "cuda")


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside torch.compile's and DDP's wrappers (whose state dict has no prefixes)."""
    model = getattr(model, "_orig_mod", model)
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def cpu_threads() -> int:
    """One torch thread per core this process may use: more makes OpenMP spin (8-12x slower)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)
