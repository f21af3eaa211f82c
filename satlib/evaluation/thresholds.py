"""Each protocol's map thresholds, and the foreground at a threshold as ``scores > cut``.

SAT sweeps four thresholds and compares the float32 map with float32(t); wsolevaluation sweeps
0.00..0.99 and compares its 8-bit map ``q = uint8(255 * map)`` with ``int(t * q.max())``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from satlib.evaluation.checks import check_maps, check_protocol, check_thresholds, image_hw
from satlib.evaluation.components import over_threads
from satlib.evaluation.normalize import cubic_taps, linear_taps, normalized_maps

SAT_THRESHOLDS = (0.3, 0.35, 0.4, 0.45)  # official train.py sweep (evaluator.py then uses the best one)
WSOLEVAL_THRESHOLDS = tuple(float(t) for t in np.arange(0, 1, 0.01))  # cam_curve_interval=0.01


def default_thresholds(protocol: str) -> tuple[float, ...]:
    """Each protocol's own threshold list: SAT's [0.3, 0.35, 0.4, 0.45], wsoleval's 0.00..0.99."""
    return SAT_THRESHOLDS if check_protocol(protocol) == "sat" else WSOLEVAL_THRESHOLDS


def threshold_levels(normalized: Tensor, thresholds: Sequence[float], protocol: str) -> tuple[Tensor, Tensor]:
    """Scores (N, H, W) and cuts (N, T) such that the foreground at threshold t is ``scores > cut``.

    SAT compares the float32 map with float32(t); wsoleval quantises to 8 bits (the scores are the
    uint8 levels) and compares with ``int(t * q.max())`` (a float32 cut, exact). Both on the
    maps' device.
    """
    t = check_thresholds(thresholds).to(normalized.device)
    return _scores_and_cuts(normalized, t, check_protocol(protocol))


def _scores_and_cuts(normalized: Tensor, thresholds: Tensor, protocol: str) -> tuple[Tensor, Tensor]:
    """`threshold_levels` with the float64 thresholds (T,) already on the maps' device."""
    if protocol == "sat":
        return normalized, thresholds.float().expand(normalized.shape[0], -1)
    quantized = (normalized * 255).to(torch.uint8)
    return quantized, _level_cuts(quantized, thresholds)


def _level_cuts(levels: Tensor, thresholds: Tensor) -> Tensor:
    """wsoleval's cuts ``int(t * q.max())`` of 8-bit maps (N, H, W) at float64 thresholds (T,) -> (N, T) float32."""
    peak = levels.amax((1, 2)).double()
    return torch.floor(thresholds.to(levels.device)[None, :] * peak[:, None]).float()


def map_levels(maps: Tensor, image_size: int | Sequence[int], thresholds: Sequence[float], protocol: str,
               threads: int | None = None) -> tuple[Tensor, Tensor]:
    """`threshold_levels` of `normalize_maps`: raw maps (N, h, w) -> scores (N, H, W) and cuts (N, T).

    wsoleval maps on the CPU take one numba kernel (resize, normalise and quantise fused, the same
    bits; maps split over `threads` threads, default torch's); everything else the torch ops.
    """
    maps = check_maps(maps)
    t = check_thresholds(thresholds).to(maps.device)
    return checked_map_levels(maps, image_hw(image_size), t, check_protocol(protocol), threads=threads)


def checked_map_levels(maps: Tensor, size: tuple[int, int], thresholds: Tensor, protocol: str,
                       threads: int | None = None) -> tuple[Tensor, Tensor]:
    """`map_levels` of checked float32 maps with float64 thresholds (T,) on their device: no host sync on CUDA."""
    if maps.device.type != "cpu":
        return _scores_and_cuts(normalized_maps(maps, size, protocol), thresholds, protocol)
    if protocol == "sat":
        return _sat_levels(maps, size, threads), thresholds.float().expand(maps.shape[0], -1)
    # numba: heavy to import (about a second) and compiled on first use, so only a CPU sweep loads it
    from satlib.evaluation._levels import wsoleval_levels

    raw = maps.contiguous().numpy()
    H, W = size
    (col_index, col_weight), (row_index, row_weight) = cubic_taps(raw.shape[2], W), cubic_taps(raw.shape[1], H)
    levels = np.empty((raw.shape[0], H, W), dtype=np.uint8)

    def run(start: int, stop: int) -> None:
        wsoleval_levels(raw[start:stop], col_index, col_weight, row_index, row_weight, levels[start:stop])

    over_threads(run, len(raw), threads)
    levels = torch.from_numpy(levels)
    return levels, _level_cuts(levels, thresholds)


def _sat_levels(maps: Tensor, size: tuple[int, int], threads: int | None) -> Tensor:
    """SAT's normalised, resized maps of CPU maps (N, h, w) -> (N, H, W) float32: one numba kernel, the bits of
    `normalized_maps`, maps split over `threads` threads."""
    from satlib.evaluation._levels import sat_levels

    raw = maps.contiguous().numpy()
    cols = [t.numpy() for t in linear_taps(raw.shape[2], size[1], maps.device)]  # lo, hi, weight
    rows = [t.numpy() for t in linear_taps(raw.shape[1], size[0], maps.device)]
    out = np.empty((raw.shape[0], *size), dtype=np.float32)

    def run(start: int, stop: int) -> None:
        sat_levels(raw[start:stop], *cols, *rows, out[start:stop])

    over_threads(run, len(raw), threads)
    return torch.from_numpy(out)
