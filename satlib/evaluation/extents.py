"""Localization maps -> component extents on any backend, and the GPU-host pipeline.

`extents_from_maps` is what `boxes_from_maps` and `LocalizationEvaluator` call: each protocol's
levels (`map_levels`: resize, normalise, quantise), then the components (`component_extents`).
The host path ("host", `resolve_backend`'s choice on CUDA) interleaves the two chunk by chunk,
so that the device's share hides behind the host's:

    device:  levels(c0) copy(c0)  levels(c1) copy(c1)       levels(c2) copy(c2)     ...
    host:                         wait(c0) trees(c0) ...    wait(c1) trees(c1) ...

The dense, regular part (resize, normalisation, 8-bit quantisation) runs on the device; the
levels go to page-locked host memory by an asynchronous copy followed by a CUDA event; the
component trees (`satlib.evaluation.components.map_extents`, numba, maps split over the host's
threads) start on chunk i once its event has fired, and chunk i+1's device work and copy are
queued before they start. Memory is bounded by the chunk, not by the number of maps: two
page-locked buffers of one chunk's levels each, used in turn (chunk i+2 is copied into chunk i's
buffer only after the host has finished with it), so at most two chunks of levels are on the
host at any time; on the device, one chunk's float maps and levels at a time. Only the extents
(and with `want_all` the component rows) of the whole call are kept.

On CPU tensors the same code runs without pinning or events (the levels are already on the
host), which is how the tests exercise it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from satlib.evaluation.checks import check_maps, check_protocol, check_thresholds, image_hw
from satlib.evaluation.components import component_extents, map_extents, resolve_backend, torch_pool_asleep
from satlib.evaluation.thresholds import checked_map_levels

HOST_CHUNK = 64  # maps per host-path chunk
HOST_BUFFERS = 2  # page-locked level buffers, used in turn: chunks of levels on the host at once


def extents_from_maps(maps: Tensor, image_size: int | Sequence[int], thresholds: Sequence[float], protocol: str,
                      backend: str = "auto", want_all: bool = False,
                      chunk: int = HOST_CHUNK) -> tuple[Tensor, Tensor]:
    """Raw maps (N, h, w) -> the largest component's extent per map and threshold (N, T, 4) and,
    with `want_all`, every component as rows (M, 7) (`component_extents`' outputs), on the
    maps' device.

    `backend`: "propagate", "union_find", "host" (levels on the device, trees on the host, `chunk`
    maps at a time, overlapped) or "auto" (`resolve_backend`). All give the same extents.
    """
    maps = check_maps(maps)
    size = image_hw(image_size)
    protocol = check_protocol(protocol)
    cuts_at = check_thresholds(thresholds).to(maps.device)
    backend = resolve_backend(backend, maps.device)
    if backend == "host":
        largest, rows = host_extents(maps, size, cuts_at, protocol, want_all=want_all, chunk=chunk)
        return largest.to(maps.device), rows.to(maps.device)
    with torch_pool_asleep() if maps.device.type == "cpu" else contextlib.nullcontext():
        scores, cuts = checked_map_levels(maps, size, cuts_at, protocol)
        return component_extents(scores, cuts, protocol, backend=backend, want_all=want_all)


@dataclass
class _Levels:
    """One chunk's levels on the host: scores (n, H, W), cuts (n, T), and the event that says they arrived."""

    start: int
    scores: Tensor
    cuts: Tensor
    arrived: torch.cuda.Event | None


def host_extents(maps: Tensor, size: tuple[int, int], thresholds: Tensor, protocol: str, *, want_all: bool,
                 chunk: int = HOST_CHUNK) -> tuple[Tensor, Tensor]:
    """The host path on checked maps (N, h, w) and float64 thresholds (T,) on their device ->
    extents (N, T, 4) and rows (M, 7) as CPU tensors. See the module docstring."""
    buffers: list[tuple[Tensor, Tensor] | None] = [None] * HOST_BUFFERS

    def levels_to_host(start: int, slot: int) -> _Levels:
        scores, cuts = checked_map_levels(maps[start:start + chunk], size, thresholds, protocol)
        if not maps.is_cuda:
            return _Levels(start, scores, cuts, None)
        if buffers[slot] is None:  # one chunk's worth, page-locked, reused every other chunk
            buffers[slot] = (torch.empty((chunk, *scores.shape[1:]), dtype=scores.dtype, pin_memory=True),
                             torch.empty((chunk, cuts.shape[1]), dtype=cuts.dtype, pin_memory=True))
        host_scores, host_cuts = (b[:len(scores)] for b in buffers[slot])
        host_scores.copy_(scores, non_blocking=True)
        host_cuts.copy_(cuts, non_blocking=True)
        arrived = torch.cuda.Event()
        arrived.record()
        return _Levels(start, host_scores, host_cuts, arrived)

    def trees(levels: _Levels) -> tuple[np.ndarray, np.ndarray]:
        if levels.arrived is not None:
            levels.arrived.synchronize()
        largest, rows = map_extents(levels.scores.numpy(), levels.cuts.numpy(), wsoleval=protocol == "wsoleval",
                                    want_all=want_all)
        rows[:, 0] += levels.start
        return largest, rows

    starts = range(0, len(maps), chunk)
    parts = []
    upcoming = levels_to_host(starts[0], slot=0)
    for i, start in enumerate(starts[1:], start=1):
        # Queue chunk i's device work and copy before the host starts on chunk i-1.
        current, upcoming = upcoming, levels_to_host(start, slot=i % HOST_BUFFERS)
        parts.append(trees(current))
    parts.append(trees(upcoming))
    return (torch.from_numpy(np.concatenate([largest for largest, _ in parts])),
            torch.from_numpy(np.concatenate([rows for _, rows in parts])))
