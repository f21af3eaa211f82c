"""Localization maps -> boxes, batched over maps and thresholds, as each protocol computes them.

Two published protocols, reproduced as their code runs (SAT: ``evaluator.py``, ``utils/func.py``,
``utils/accuracy.py``; wsolevaluation: ``inference.py``, ``evaluation.py``):

=====================  ========================================  ==============================================
step                   ``protocol="sat"``                        ``protocol="wsoleval"``
=====================  ========================================  ==============================================
normalise              min-max, ``(m - min) / (max - min + 1e-5)``  after the resize: ``m -= min; m /= max``;
                       on the raw map, float32                    a constant map becomes zeros
resize                 bilinear to the image (cv2 ``INTER_LINEAR``,  bicubic (cv2 ``INTER_CUBIC``) of the raw map
                       half-pixel centres; bit-exact here)        (cv2's own code bit for bit; IPP: see below)
foreground at t        ``map > t`` (float32)                      8-bit map ``q = uint8(255 * map)``,
                                                                  ``q > int(t * q.max())``
components             8-connected (``skimage.measure.label``)    ``cv2.findContours(RETR_TREE)``: outer contours
                                                                  of 8-connected components, and hole contours
                                                                  (4-connected background not reaching the border)
"largest"              most pixels; ties: first in raster order    largest outer-contour polygon area (holes filled),
                                                                  ties: the contour cv2 lists first, i.e. the
                                                                  component whose first pixel is last in raster order
box (xyxy, pixels)     ``[min_col, min_row, max_col+1, max_row+1]``  ``[min_col, min_row, max_col+1, max_row+1]``
                                                                  clipped to ``W-1`` / ``H-1``; a hole gives the box
                                                                  of the foreground pixels around it,
                                                                  ``[min_col-1, min_row-1, max_col+2, max_row+2]``
                                                                  of its pixels, clipped the same way
nothing above t        ``[0, 0, W, H]`` (the whole image)         ``[0, 0, 0, 0]``
IoU                    ``+1`` ("inclusive") formula, max over GT    same
=====================  ========================================  ==============================================

Exactness: the bilinear resize reproduces cv2's float32 ``INTER_LINEAR`` (``a + (b - a) * w`` with one
rounding, per pass). The bicubic resize reproduces cv2's own float32 ``INTER_CUBIC`` code bit for
bit; the default OpenCV wheels hand that resize to Intel IPP instead, which differs by ~1 ulp on
about half the pixels, and after 8-bit quantisation moves about 1 pixel in 10^5 by one level. Contour
polygon areas are computed exactly without tracing contours: the area of the outer contour
through pixel centres equals (number of 2x2 windows of the hole-filled component with 3 pixels)/2
+ (number with 4 pixels). Everything after the resize is exact.

Where each step lives: input checks in `checks`, normalise and resize in `normalize`, the
thresholds and ``scores > cut`` in `thresholds`, components and their extents (torch and numba
backends) in `components`, maps -> extents on a backend (and the GPU-host pipeline) in
`extents`, extents -> boxes here, the IoU and GT-box padding in `iou`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from einops import rearrange
from torch import Tensor

from satlib.evaluation.checks import HOLE, check_protocol, image_hw
from satlib.evaluation.extents import extents_from_maps

MODES = ("largest", "all")


def extents_to_boxes(extents: Tensor, protocol: str, image_size: int | Sequence[int],
                     holes: Tensor | None = None) -> Tensor:
    """Inclusive extents (..., 4) (min_row, min_col, max_row, max_col; -1 = nothing) -> xyxy boxes (..., 4).

    SAT: ``[min_col, min_row, max_col+1, max_row+1]``, nothing -> ``[0, 0, W, H]``. wsoleval: the
    same clipped to ``W-1``/``H-1`` (holes grown by one pixel first), nothing -> ``[0, 0, 0, 0]``.
    """
    H, W = image_hw(image_size)
    r0, c0, r1, c1 = extents.unbind(-1)
    empty = r0 < 0
    if check_protocol(protocol) == "sat":
        boxes = torch.stack([c0, r0, c1 + 1, r1 + 1], -1)
        whole = torch.tensor([0, 0, W, H], device=extents.device)
        return torch.where(empty[..., None], whole, boxes)
    grow = torch.zeros_like(r0) if holes is None else holes.long()
    boxes = torch.stack([c0 - grow, r0 - grow, (c1 + 1 + grow).clamp(max=W - 1),
                         (r1 + 1 + grow).clamp(max=H - 1)], -1)
    return torch.where(empty[..., None], 0, boxes)


def rows_to_boxes(rows: Tensor, protocol: str, image_size: int | Sequence[int]) -> Tensor:
    """Component rows (M, 7) from `component_extents` -> xyxy boxes (M, 4) (holes as hole contours)."""
    return extents_to_boxes(rows[:, 3:], protocol, image_size, holes=rows[:, 2] == HOLE)


def pad_boxes_per_plane(rows: Tensor, boxes: Tensor, num_maps: int, num_thresholds: int) -> tuple[Tensor, Tensor]:
    """Rows (M, 7) with their boxes (M, 4) -> padded (N, T, K, 4) boxes and valid (N, T, K).

    Boxes are ordered canonically (kind, then extent); (map, threshold) pairs without rows hold
    one invalid-extent placeholder, filled by the caller.
    """
    N, T = num_maps, num_thresholds
    device = rows.device
    order = torch.arange(rows.shape[0], device=device)
    for k in range(6, -1, -1):
        order = order[torch.argsort(rows[order, k], stable=True)]  # map, threshold, kind, extent
    rows, boxes = rows[order], boxes[order]
    plane = rows[:, 0] * T + rows[:, 1]
    counts = torch.bincount(plane, minlength=N * T)
    K = max(1, int(counts.max())) if plane.numel() else 1
    slot = torch.arange(plane.numel(), device=device) - (torch.cumsum(counts, 0) - counts)[plane]
    padded = torch.zeros(N * T, K, 4, dtype=torch.int64, device=device)
    padded[plane, slot] = boxes
    valid = torch.zeros(N * T, K, dtype=torch.bool, device=device)
    valid[plane, slot] = True
    per_map = "(maps thresholds) boxes ... -> maps thresholds boxes ..."
    return rearrange(padded, per_map, maps=N), rearrange(valid, per_map, maps=N)


def boxes_from_maps(maps: Tensor, thresholds: Sequence[float], image_size: int | Sequence[int],
                    mode: str = "largest", protocol: str = "sat", backend: str = "auto"):
    """Boxes of thresholded maps, (N, h, w) -> (N, T, 4) int64 xyxy pixels, batched on the maps' device.

    Per map: normalise, resize to `image_size`, threshold at every t, 8-connected components.
    ``mode="largest"`` returns the largest component's box, (N, T, 4). ``mode="all"`` returns
    ``(boxes, valid)``, (N, T, K, 4) and (N, T, K) bool: every component's box (with wsoleval, also
    every hole contour's box; MaxBoxAccV2's multi-contour variant), padded to the largest count K.
    Conventions per protocol are in the module docstring. `backend`: "propagate" (torch label
    propagation, any device), "union_find" (numba component trees), "host" (levels on the maps'
    device, the trees on the host cores, overlapped) or "auto" (`resolve_backend`: the trees on
    the CPU, the host path on CUDA); all give identical boxes.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be 'largest' or 'all', got {mode!r}")
    largest, rows = extents_from_maps(maps, image_size, thresholds, protocol, backend=backend,
                                      want_all=mode == "all")
    largest = extents_to_boxes(largest, protocol, image_size)
    if mode == "largest":
        return largest
    N, T = largest.shape[:2]
    boxes, valid = pad_boxes_per_plane(rows, rows_to_boxes(rows, protocol, image_size), num_maps=N,
                                       num_thresholds=T)
    empty = ~valid[..., 0]  # nothing above the threshold: the protocol's empty-prediction box
    boxes[..., 0, :] = torch.where(empty[..., None], largest, boxes[..., 0, :])
    valid[..., 0] = True
    return boxes, valid
