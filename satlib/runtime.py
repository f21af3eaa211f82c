"""Where a process runs and how: device, torchrun's process group, seeds and RNG state, autocast, TF32,
threads.

Training, evaluation, prediction, the demo and the book all need these; none of them belongs to the
training loop. DDP as in nanoGPT: torchrun sets RANK/WORLD_SIZE/LOCAL_RANK (srun: SLURM_LOCALID), rank
0 is the master; small decisions every rank must share go over a gloo group of CPU tensors.
How much work a run may do (the smoke switch) is config: `satlib.config.apply_smoke`.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn


@dataclass
class Dist:
    """Where this process sits: rank among world processes, and its device.

    `control` is the process group for the small decisions every rank must share (skip a micro-batch,
    stop on time): gloo, on CPU tensors, so that taking one never waits for the GPU's queue.
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    control: object = None  # a torch.distributed process group; None alone
    owns_group: bool = False  # setup_distributed created the process group (and the run destroys it)

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
    """Join the process group torchrun describes (RANK/WORLD_SIZE, the GPU by `local_rank`), or run alone.

    When this call creates the process group, `Dist.owns_group` is set and `teardown_distributed`
    destroys it at the end of the run; a group created by the caller is left to the caller.
    """
    if int(os.environ.get("RANK", -1)) == -1:
        return Dist(device=resolve_device(device_name))
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = local_rank(os.environ, torch.cuda.device_count())
    device = resolve_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    owns_group = not dist.is_initialized()
    if owns_group:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    control = dist.group.WORLD if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")
    return Dist(rank, world, local, device, control, owns_group)


def local_rank(environ, devices: int) -> int:
    """This process's index on its machine (its GPU): LOCAL_RANK (torchrun), else SLURM_LOCALID (srun),
    else RANK modulo the visible GPUs (a launcher that sets RANK alone, one process per GPU)."""
    for name in ("LOCAL_RANK", "SLURM_LOCALID"):
        if environ.get(name, "") != "":
            return int(environ[name])
    return int(environ["RANK"]) % max(devices, 1)


def teardown_distributed(ddp: Dist) -> None:
    """Destroy the process group when `setup_distributed` created it (every rank calls this)."""
    if ddp.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def any_rank(flag: bool, ddp: Dist) -> bool:
    """Whether `flag` holds on any rank (every rank gets the same answer); `flag` alone without DDP.
    A blocking all-reduce of one CPU number over `ddp.control`: no GPU synchronisation."""
    if not ddp.enabled:
        return flag
    value = torch.tensor(float(flag))
    dist.all_reduce(value, op=dist.ReduceOp.MAX, group=ddp.control)
    return bool(value.item())


# ----------------------------------------------------------------------------------------------
# precision: TF32 and bf16 autocast

TF32_DEVICE_TYPES = frozenset({"cuda"})  # where `allow_tf32` turns TF32 on
AUTOCAST_DEVICE_TYPES = frozenset({"cuda"})  # where train.amp turns bf16 autocast on (CPU autocast is slow)


@contextlib.contextmanager
def allow_tf32(device: torch.device) -> Iterator[None]:
    """TF32 matmuls and convolutions on CUDA (Ampere and later) inside the block; the flags as they were
    after it, returned or raised (a notebook's later cells keep full fp32). Nothing on a CPU."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    if device.type in TF32_DEVICE_TYPES:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool = True) -> Iterator[None]:
    """Inside the block (when `enabled`) torch runs only deterministic algorithms and raises on an op that
    has none; cuDNN picks deterministic kernels (no benchmarking) and cuBLAS a fixed workspace
    (CUBLAS_WORKSPACE_CONFIG=:4096:8 unless set: it must be in the environment before the process's first
    cuBLAS call, so set it yourself when CUDA ran matmuls before). Every flag as it was after the block."""
    if not enabled:
        yield
        return
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2], saved[3]


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (every device)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state(device: torch.device | None = None) -> dict:
    """Every RNG a training step draws from, in a form `weights_only` loading accepts: Python's, NumPy's,
    torch's CPU generator and, on a CUDA `device`, that one device's generator (this rank's own GPU)."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": [torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached]}
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device | None = None) -> None:
    """Restore what `rng_state` returned (after a round trip through a checkpoint) on this rank's `device`.

    The CUDA generator is restored on `device` only, whatever number of GPUs the saving machine had;
    an older checkpoint holding every visible GPU's state gives this device's entry (the last one
    when it has fewer). A state saved without CUDA, or restored on a CPU, leaves CUDA as seeded.
    """
    random.setstate(_as_tuples(state["python"]))
    torch.set_rng_state(state["torch"])
    keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    cuda = state.get("cuda")
    if cuda is None or device is None or device.type != "cuda":
        return
    if isinstance(cuda, (list, tuple)):  # every visible GPU's state (satlib before per-device states)
        if not cuda:
            return
        cuda = cuda[min(device.index or 0, len(cuda) - 1)]
    torch.cuda.set_rng_state(cuda, device)


def _as_tuples(value):
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def gather_rng_states(ddp: Dist) -> list[dict]:
    """Every rank's `rng_state(its device)` in rank order, so each rank resumes its own stream."""
    state = rng_state(ddp.device)
    if not ddp.enabled:
        return [state]
    states = [None] * ddp.world
    dist.all_gather_object(states, state)
    return states


def bf16_autocast(device: torch.device, *, enabled: bool = True) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when `enabled` (train.amp); a no-op context on a CPU (`AUTOCAST_DEVICE_TYPES`)."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                          enabled=enabled and device.type in AUTOCAST_DEVICE_TYPES)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside torch.compile's and DDP's wrappers (whose state dict has no prefixes)."""
    model = getattr(model, "_orig_mod", model)
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def cpu_threads() -> int:
    """One torch thread per core this process may use: more makes OpenMP spin (8-12x slower)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)
