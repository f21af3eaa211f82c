"""Connected components of thresholded localization maps, on the device and on the CPU.

Two ways to the same answer:

- `label_components`: batched labelling of (P, H, W) masks with torch ops only (CUDA or CPU
  tensors, no per-image loop, no copy to the host). Every pixel points at a pixel of its
  component; each round hooks every tree root to the smallest label next to its tree (a
  scatter-min) and then shortens the paths (pointer jumping), so a snake-like component takes
  O(log) rounds rather than one round per pixel of its length. Labels converge to the raster
  index of the component's first pixel.
- `map_boxes`: the CPU path. Thresholds are nested, so one union-find pass
  over each map's pixels sorted by value (a component tree, compiled with numba) yields every
  threshold's components, sizes, areas and extents at once.

Extents are inclusive pixel ranges (min_row, min_col, max_row, max_col); each protocol's box
convention is applied in `satlib.evaluation.boxes`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

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
# CPU path: component trees with numba (compiled on first use, cached on disk)
# ---------------------------------------------------------------------------------------------

def map_boxes(values: np.ndarray, cuts: np.ndarray, wsoleval: bool, want_all: bool,
              threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Component trees of (N, H, W) maps at (N, T) cuts (foreground ``values > cut``); `values`
    float, or uint8 8-bit levels (wsoleval's quantised maps).

    Returns the largest component's extent per map and threshold, (N, T, 4) (-1 where nothing is
    above the cut), and with `want_all` every component as rows (M, 7) = (map, threshold, kind,
    min_row, min_col, max_row, max_col). SAT (`wsoleval` False): size = pixel count, ties to the
    first pixel in raster order. wsoleval: holes (4-connected background not reaching the border)
    filled, size = outer-contour polygon area, ties to the last; rows also list the holes (kind 1).
    Maps are split over `threads` threads (default: torch's intra-op thread count).
    """
    from satlib.evaluation._unionfind import map_boxes as kernel  # numba compiles on first use

    N, H, W = values.shape
    levels = values.dtype == np.uint8  # 8-bit levels: a lookup table per map instead of a search per pixel
    flat = np.ascontiguousarray(values.reshape(N, H * W), dtype=np.uint8 if levels else np.float32)
    cuts = np.ascontiguousarray(cuts, dtype=np.float64)  # float32 values compare exactly in float64
    threads = max(1, min(N, torch.get_num_threads() if threads is None else threads))
    if threads == 1:
        return kernel(flat, cuts, H, W, wsoleval, want_all, levels)
    from concurrent.futures import ThreadPoolExecutor

    bounds = np.linspace(0, N, threads + 1).astype(int)
    with ThreadPoolExecutor(threads) as pool:  # the kernel releases the GIL
        parts = list(pool.map(lambda ab: kernel(flat[ab[0]:ab[1]], cuts[ab[0]:ab[1]], H, W, wsoleval, want_all,
                                                levels), zip(bounds[:-1], bounds[1:])))
    for start, (_, rows) in zip(bounds[:-1], parts):
        rows[:, 0] += start
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
