"""Connected components of thresholded localization maps and their extents, on any backend.

`component_extents` is the entry point for scores already thresholded: the largest component's
extent per map and threshold (and every component's, with `want_all`), by backends that give
identical answers:

- "propagate" (the device path): batched labelling of (P, H, W) masks with torch ops only
  (`label_components`; CUDA or CPU tensors, no per-image loop, no copy to the host). Every
  pixel points at a pixel of its component; each round hooks every tree root to the smallest
  label next to its tree (a scatter-min) and then shortens the paths (pointer jumping), so a
  snake-like component takes O(log) rounds rather than one round per pixel of its length.
  Labels converge to the raster index of the component's first pixel.
- "union_find" (the CPU path, default on the CPU): `map_extents`. Thresholds are nested, so one
  union-find pass over each map's pixels sorted by value (a component tree, compiled with numba)
  yields every threshold's components, sizes, areas and extents at once.
- "host" (default on CUDA, provisional: `resolve_backend`): the same trees on the host cores fed
  by levels made on the device, overlapped batch by batch (`satlib.evaluation.extents`).

Extents are inclusive pixel ranges (min_row, min_col, max_row, max_col); each protocol's box
convention is applied in `satlib.evaluation.boxes`.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from satlib.evaluation.checks import COMPONENT, HOLE, check_backend, check_protocol

MAX_PIXELS_CPU = 1 << 22  # planes x pixels per device-path chunk (bounds memory)
MAX_PIXELS_CUDA = 1 << 25
Part = TypeVar("Part")

# (rows, cols) offsets of the 8- and 4-neighbourhoods.
NEIGHBOURS = {
    8: ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)),
    4: ((-1, 0), (0, -1), (0, 1), (1, 0)),
}


# ---------------------------------------------------------------------------------------------
# Device path: hooking + pointer jumping on (P, H*W + 1) label tables
# ---------------------------------------------------------------------------------------------

def _neighbour_min(grid: Tensor, connectivity: int, fill: int, pooling: bool) -> Tensor:
    """Smallest label over each pixel and its neighbours, (P, H, W) -> (P, H, W).

    With `pooling`, one max-pooling of the negated labels (exact in float32 below 2^24; a 3x3
    window for 8-connectivity, a 3x1 and a 1x3 window for 4): fewer memory sweeps on a GPU.
    Otherwise shifted minimums (faster on a CPU). Outside the image counts as background.
    """
    if pooling and fill < (1 << 24):
        negated = -grid[:, None].float()
        if connectivity == 8:
            pooled = F.max_pool2d(negated, 3, stride=1, padding=1)
        else:
            pooled = torch.maximum(F.max_pool2d(negated, (3, 1), stride=1, padding=(1, 0)),
                                   F.max_pool2d(negated, (1, 3), stride=1, padding=(0, 1)))
        return (-pooled[:, 0]).to(grid.dtype)
    H, W = grid.shape[-2:]
    padded = F.pad(grid, (1, 1, 1, 1), value=fill)
    smallest = grid
    for dr, dc in NEIGHBOURS[connectivity]:
        smallest = torch.minimum(smallest, padded[:, 1 + dr:1 + dr + H, 1 + dc:1 + dc + W])
    return smallest


def _run_starts(mask: Tensor) -> Tensor:
    """Each foreground pixel's row run start (raster index), background n: (P, H, W) -> (P, H, W).

    Collapses every horizontal run in one step, so the rounds only have to join runs.
    """
    P, H, W = mask.shape
    index = torch.arange(H * W, device=mask.device).reshape(H, W)
    left = F.pad(mask[..., :-1], (1, 0), value=False)
    starts = torch.where(mask & ~left, index, -1).cummax(dim=-1).values
    return torch.where(mask, starts, H * W)


_INDEX_DTYPES: dict[str, torch.dtype] = {}


def index_dtype(device: torch.device) -> torch.dtype:
    """int32 if this torch gathers and scatters with int32 indices on `device` (half the memory
    traffic), else int64."""
    if device.type not in _INDEX_DTYPES:
        try:
            probe = torch.zeros(1, 2, dtype=torch.int32, device=device)
            probe.gather(1, probe).scatter_reduce(1, probe, probe, reduce="amin")
            _INDEX_DTYPES[device.type] = torch.int32
        except (RuntimeError, TypeError):
            _INDEX_DTYPES[device.type] = torch.int64
    return _INDEX_DTYPES[device.type]


def label_components(mask: Tensor, connectivity: int = 8, check_every: int = 2,
                     pooling: bool | None = None) -> Tensor:
    """Connected components of (P, H, W) bool masks -> (P, H*W + 1) integer labels (`index_dtype`).

    A foreground pixel's label is the raster index of its component's first pixel; background
    pixels and the extra last slot hold the sentinel n = H*W, so the table can index itself and
    per-label tables of length n + 1. Convergence is checked every `check_every` rounds (one host
    sync per check). `pooling` picks the neighbour-min kernel (default: pooling on CUDA).
    """
    if connectivity not in NEIGHBOURS:
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    P, H, W = mask.shape
    n = H * W
    pooling = mask.is_cuda if pooling is None else pooling
    fg = mask.reshape(P, n)
    labels = torch.full((P, n + 1), n, dtype=index_dtype(mask.device), device=mask.device)
    labels[:, :n] = _run_starts(mask).reshape(P, n)
    while True:
        before = labels
        for _ in range(check_every):
            grid = labels[:, :n].reshape(P, H, W)
            smallest = torch.where(fg, _neighbour_min(grid, connectivity, n, pooling).reshape(P, n), n)
            labels = labels.scatter_reduce(1, labels[:, :n], smallest, reduce="amin")  # hook roots
            labels = labels.gather(1, labels.gather(1, labels))  # jump twice
        if torch.equal(labels, before):
            return labels


def root_mask(labels: Tensor) -> Tensor:
    """Which pixels are their component's root (first pixel), (P, n+1) -> (P, n) bool."""
    n = labels.shape[1] - 1
    return labels[:, :n] == torch.arange(n, device=labels.device)


def label_sums(labels: Tensor, weights: Tensor | None = None) -> Tensor:
    """Sum of per-pixel `weights` (P, n) (default 1) into each label slot -> (P, n+1) int64."""
    P, slots = labels.shape
    n = slots - 1
    if weights is None:
        weights = torch.ones(P, n, dtype=torch.int64, device=labels.device)
    sums = torch.zeros(P, slots, dtype=torch.int64, device=labels.device)
    return sums.scatter_add_(1, labels[:, :n], weights.to(torch.int64))


def label_extents(labels: Tensor, width: int) -> Tensor:
    """Inclusive extents per label slot, (P, n+1) -> (P, n+1, 4): min_row, min_col, max_row, max_col."""
    P, slots = labels.shape
    n = slots - 1
    index = torch.arange(n, device=labels.device)
    rows, cols = (index // width).expand(P, n), (index % width).expand(P, n)
    target = labels[:, :n]

    def reduce(values: Tensor, how: str, start: int) -> Tensor:
        table = torch.full((P, slots), start, dtype=torch.int64, device=labels.device)
        return table.scatter_reduce_(1, target, values, reduce=how)

    return torch.stack([reduce(rows, "amin", n), reduce(cols, "amin", n),
                        reduce(rows, "amax", -1), reduce(cols, "amax", -1)], dim=-1)


# ---------------------------------------------------------------------------------------------
# Device path: components -> inclusive extents from the label tables (same outputs as the CPU path)
# ---------------------------------------------------------------------------------------------

def _plane_masks(scores: Tensor, cuts: Tensor, planes: Tensor) -> Tensor:
    """Foreground of the selected (map, threshold) planes, flat index map*T + t -> (P, H, W) bool."""
    T = cuts.shape[1]
    return scores[planes // T] > cuts.reshape(-1)[planes][:, None, None]


def _plane_chunks(total: int, per_plane: int, device: torch.device) -> list[Tensor]:
    """Flat plane indices 0..total-1 in chunks of at most `MAX_PIXELS_*` / `per_plane` planes."""
    budget = MAX_PIXELS_CUDA if device.type == "cuda" else MAX_PIXELS_CPU
    step = max(1, budget // per_plane)
    return list(torch.arange(total, device=device).split(step))


def _border_pixels(H: int, W: int, device: torch.device) -> Tensor:
    """1 on the image border, 0 inside, flat (H*W,) int64."""
    edge = torch.zeros(H, W, dtype=torch.int64, device=device)
    edge[0, :] = edge[-1, :] = 1
    edge[:, 0] = edge[:, -1] = 1
    return edge.reshape(-1)


def _background_and_holes(mask: Tensor) -> tuple[Tensor, Tensor]:
    """(P, H, W) masks -> 4-connected background labels (P, n+1) and which pixels are holes (P, n)."""
    P, H, W = mask.shape
    n = H * W
    labels = label_components(~mask, connectivity=4)
    reaches = label_sums(labels, _border_pixels(H, W, mask.device).expand(P, n)) > 0
    background = ~mask.reshape(P, n)
    return labels, background & ~reaches.gather(1, labels[:, :n])


def _twice_contour_area(filled: Tensor, labels: Tensor) -> Tensor:
    """Twice the outer-contour polygon area per label slot, (P, H, W) x (P, n+1) -> (P, n+1):
    2x2 windows with 3 pixels count 1, with 4 count 2."""
    P, H, W = filled.shape
    n = H * W
    f = filled.to(torch.int8)
    count = f[:, :-1, :-1] + f[:, 1:, :-1] + f[:, :-1, 1:] + f[:, 1:, 1:]
    area2 = (count == 3).long() + 2 * (count == 4).long()
    grid = labels[:, :n].reshape(P, H, W)
    corner = torch.minimum(torch.minimum(grid[:, :-1, :-1], grid[:, 1:, :-1]),
                           torch.minimum(grid[:, :-1, 1:], grid[:, 1:, 1:]))
    sums = torch.zeros(P, n + 1, dtype=torch.int64, device=filled.device)
    return sums.scatter_add_(1, corner.reshape(P, -1), area2.reshape(P, -1))


def _label_extent(labels: Tensor, label: Tensor, width: int) -> Tensor:
    """Inclusive extent of one label per plane, (P, n+1) labels and (P,) label -> (P, 4)."""
    n = labels.shape[1] - 1
    index = torch.arange(n, device=labels.device)
    rows, cols = index // width, index % width
    member = labels[:, :n] == label[:, None]
    big = torch.tensor(n, device=labels.device)
    return torch.stack([torch.where(member, rows, big).amin(1), torch.where(member, cols, big).amin(1),
                        torch.where(member, rows, -1).amax(1), torch.where(member, cols, -1).amax(1)], 1)


def _component_rows(labels: Tensor, keep: Tensor | None, planes: Tensor, kind: int,
                    width: int) -> tuple[Tensor, Tensor]:
    """Every component root of the chunk (where `keep`) -> its plane (M,) and (kind, extent) (M, 5)."""
    root = root_mask(labels)
    if keep is not None:
        root &= keep
    which, pixel = root.nonzero(as_tuple=True)
    extent = label_extents(labels, width)[which, pixel]
    return planes[which], torch.cat([torch.full_like(extent[:, :1], kind), extent], 1)


def _propagated_extents(scores: Tensor, cuts: Tensor, protocol: str, want_all: bool) -> tuple[Tensor, Tensor]:
    """Torch label propagation: largest extents (N, T, 4) (-1 if empty) and rows (M, 7) if `want_all`."""
    N, H, W = scores.shape
    T = cuts.shape[1]
    n = H * W
    index = torch.arange(n, device=scores.device)
    largest = torch.empty(N * T, 4, dtype=torch.int64, device=scores.device)
    plane_ids, row_list = [], []
    for planes in _plane_chunks(N * T, (6 if want_all else 1) * n, scores.device):
        mask = _plane_masks(scores, cuts, planes)
        if protocol == "sat":
            labels = label_components(mask, connectivity=8)
            key = label_sums(labels)[:, :n] * (n + 1) + (n - index)  # most pixels, then first
            found = [(labels, None, COMPONENT)]
        else:
            background, hole = _background_and_holes(mask)
            filled = mask | hole.reshape(mask.shape)
            labels = label_components(filled, connectivity=8)
            key = _twice_contour_area(filled, labels)[:, :n] * (n + 1) + index  # largest area, then last
            found = [(label_components(mask, connectivity=8), None, COMPONENT),
                     (background, hole, HOLE)] if want_all else []
        best_key, best = torch.where(root_mask(labels), key, -1).max(1)
        largest[planes] = torch.where(best_key[:, None] >= 0, _label_extent(labels, best, W), -1)
        for component_labels, keep, kind in found if want_all else []:
            plane, rows = _component_rows(component_labels, keep, planes, kind, W)
            plane_ids.append(plane)
            row_list.append(rows)
    rows = torch.zeros(0, 7, dtype=torch.int64, device=scores.device)
    if want_all:
        plane = torch.cat(plane_ids)
        rows = torch.cat([torch.stack([plane // T, plane % T], 1), torch.cat(row_list)], 1)
    return rearrange(largest, "(maps thresholds) extent -> maps thresholds extent", maps=N), rows


# ---------------------------------------------------------------------------------------------
# CPU path: component trees with numba (compiled on first use, cached on disk)
# ---------------------------------------------------------------------------------------------

def map_extents(values: np.ndarray, cuts: np.ndarray, *, wsoleval: bool, want_all: bool,
                threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Component trees of (N, H, W) maps at (N, T) cuts (foreground ``values > cut``); `values`
    float, or uint8 8-bit levels (wsoleval's quantised maps).

    Returns the largest component's extent per map and threshold, (N, T, 4) (-1 where nothing is
    above the cut), and with `want_all` every component as rows (M, 7) = (map, threshold, kind,
    min_row, min_col, max_row, max_col). SAT (`wsoleval` False): size = pixel count, ties to the
    first pixel in raster order. wsoleval: holes (4-connected background not reaching the border)
    filled, size = outer-contour polygon area, ties to the last; rows also list the holes (kind
    `HOLE`). Maps are split over `threads` threads (default: torch's intra-op thread count).
    """
    # numba: heavy to import (about a second) and compiled on first use, so only the CPU trees load it
    from satlib.evaluation._unionfind import map_extents as kernel

    N, H, W = values.shape
    levels = values.dtype == np.uint8  # 8-bit levels: a lookup table per map instead of a search per pixel
    flat = np.ascontiguousarray(values.reshape(N, H * W), dtype=np.uint8 if levels else np.float32)
    cuts = np.ascontiguousarray(cuts, dtype=np.float64)  # float32 values compare exactly in float64

    def run(start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        largest, rows = kernel(flat[start:stop], cuts[start:stop], height=H, width=W, wsoleval=wsoleval,
                               want_all=want_all, levels=levels)
        rows[:, 0] += start
        return largest, rows

    parts = over_threads(run, N, threads)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def over_threads(run: Callable[[int, int], Part], count: int, threads: int | None = None) -> list[Part]:
    """``run(start, stop)`` over `count` maps cut into one contiguous range per thread (default: the
    evaluator's thread count inside `torch_pool_asleep`, else torch's intra-op thread count) -> each
    range's result, in order. The numba kernels it runs release the GIL."""
    threads = threads or _THREADS.get() or torch.get_num_threads()
    threads = max(1, min(count, threads))
    if threads == 1:
        return [run(0, count)]
    bounds = np.linspace(0, count, threads + 1).astype(int)
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(run, bounds[:-1], bounds[1:]))


_THREADS: contextvars.ContextVar[int | None] = contextvars.ContextVar("satlib_evaluator_threads", default=None)


@contextlib.contextmanager
def torch_pool_asleep() -> Iterator[int]:
    """Inside the block torch runs its ops on one thread and the evaluator's CPU work (`over_threads`: the numba
    levels and trees) on as many threads as torch's intra-op count was; yields that count.

    torch's OpenMP workers keep spinning for a while after each parallel op (libgomp's default wait policy;
    OMP_WAIT_POLICY=PASSIVE would stop it, but the runtime reads it once, when torch is imported), and
    spinning beside the numba threads they take the cores those need: 2 threads gave 1.27x one (SAT
    protocol, idle 2-core machine). With torch on one thread inside the block no parallel op wakes them.
    Nested blocks keep the outermost count.
    """
    outer = _THREADS.get()
    if outer is not None:
        yield outer
        return
    threads = torch.get_num_threads()
    token = _THREADS.set(threads)
    torch.set_num_threads(1)
    try:
        yield threads
    finally:
        torch.set_num_threads(threads)
        _THREADS.reset(token)


def _union_find_extents(scores: Tensor, cuts: Tensor, protocol: str, want_all: bool) -> tuple[Tensor, Tensor]:
    """The numba component trees (`map_extents`), same outputs as `_propagated_extents`."""
    largest, rows = map_extents(scores.cpu().numpy(), cuts.cpu().numpy(), wsoleval=protocol == "wsoleval",
                                want_all=want_all)
    return torch.from_numpy(largest).to(scores.device), torch.from_numpy(rows).to(scores.device)


# ---------------------------------------------------------------------------------------------
# Either backend
# ---------------------------------------------------------------------------------------------

def resolve_backend(backend: str, device: torch.device) -> str:
    """The backend that `backend` names for maps on `device`: "auto" is the numba trees
    ("union_find") on the CPU and the host path ("host": levels on the device, trees on the host
    cores) on CUDA.

    The CUDA choice is provisional until a GPU run: on 1 CPU core the trees take about 0.3 ms
    (SAT) and 0.7 ms (wsoleval) per 224x224 map and 100 thresholds and split over the cores,
    while label propagation sweeps every pixel of every threshold plane 6-8 times per chunk with a
    host sync per check (estimated 10-40x the official loop for a CUB-sized set). bench_eval.py
    and the GPU suite's eval section time both side by side; their first GPU run decides.
    """
    if check_backend(backend) != "auto":
        return backend
    return "host" if device.type == "cuda" else "union_find"


def component_extents(scores: Tensor, cuts: Tensor, protocol: str, backend: str = "auto",
                      want_all: bool = False) -> tuple[Tensor, Tensor]:
    """Foreground ``scores > cut`` of (N, H, W) scores at (N, T) cuts -> the largest component's
    extent per (map, threshold), (N, T, 4) (-1: nothing above the cut), and with `want_all` every
    component (and wsoleval hole) as rows (M, 7): map, threshold, kind (`COMPONENT`, `HOLE`),
    min_row, min_col, max_row, max_col. On the scores' device.

    `backend`: "propagate" (torch, any device), "union_find" or "host" (the numba trees on the
    host; given scores, there is no device work left for "host" to overlap: see
    `satlib.evaluation.extents`), or "auto" (`resolve_backend`).
    """
    backend = resolve_backend(backend, scores.device)
    run = _propagated_extents if backend == "propagate" else _union_find_extents
    return run(scores, cuts, check_protocol(protocol), want_all)
