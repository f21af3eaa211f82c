"""Localization maps -> boxes, batched over maps and thresholds, and the IoU that scores them.

Two published protocols, reproduced as their code runs (SAT: ``evaluator.py``, ``utils/func.py``,
``utils/accuracy.py``; wsolevaluation: ``inference.py``, ``evaluation.py``):

=====================  ========================================  ==============================================
step                   ``protocol="sat"``                        ``protocol="wsoleval"``
=====================  ========================================  ==============================================
normalise              min-max, ``(m - min) / (max - min + 1e-5)``  after the resize: ``m -= min; m /= max``;
                       on the raw map, float32                    a constant map becomes zeros
resize                 bilinear to the image (cv2 ``INTER_LINEAR``,  bicubic (cv2 ``INTER_CUBIC``) of the raw map
                       half-pixel centres; bit-exact here)        (torch bicubic, same kernel a=-0.75; see below)
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
rounding, per pass). The bicubic resize is torch's; it differs from cv2's ``INTER_CUBIC`` by ~1 ulp
on some pixels, which after 8-bit quantisation moves about 1 pixel in 10^5 by one level. Contour
polygon areas are computed exactly without tracing contours: the area of the outer contour
through pixel centres equals (number of 2x2 windows of the hole-filled component with 3 pixels)/2
+ (number with 4 pixels). Everything after the resize is exact.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from satlib.evaluation import components as cc

PROTOCOLS = ("sat", "wsoleval")
SAT_THRESHOLDS = (0.3, 0.35, 0.4, 0.45)  # official train.py sweep (evaluator.py then uses the best one)
WSOLEVAL_THRESHOLDS = tuple(float(t) for t in np.arange(0, 1, 0.01))  # cam_curve_interval=0.01
MAX_PIXELS_CPU = 1 << 22  # planes x pixels per device-path chunk (bounds memory)
MAX_PIXELS_CUDA = 1 << 25


def check_protocol(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
    return protocol


def default_thresholds(protocol: str) -> tuple[float, ...]:
    """Each protocol's own threshold list: SAT's [0.3, 0.35, 0.4, 0.45], wsoleval's 0.00..0.99."""
    return SAT_THRESHOLDS if check_protocol(protocol) == "sat" else WSOLEVAL_THRESHOLDS


def image_hw(image_size: int | Sequence[int]) -> tuple[int, int]:
    """Image size as (H, W) from an int or an (H, W) pair."""
    H, W = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if H < 1 or W < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    return int(H), int(W)


def check_thresholds(thresholds: Sequence[float]) -> Tensor:
    """Thresholds as a float64 (T,) tensor; each must be finite and in [0, 1]."""
    values = torch.as_tensor(thresholds, dtype=torch.float64).reshape(-1)
    if values.numel() == 0:
        raise ValueError("thresholds is empty")
    if not torch.isfinite(values).all() or (values < 0).any() or (values > 1).any():
        raise ValueError(f"thresholds must lie in [0, 1], got {values.tolist()}")
    return values


def check_maps(maps: Tensor) -> Tensor:
    """Localization maps as finite float32 (N, h, w); a clear error otherwise."""
    if not isinstance(maps, Tensor):
        raise TypeError(f"maps must be a torch.Tensor, got {type(maps).__name__}")
    if maps.dim() != 3:
        raise ValueError(f"maps must be (N, h, w), got shape {tuple(maps.shape)}")
    if maps.shape[0] == 0 or maps.shape[1] == 0 or maps.shape[2] == 0:
        raise ValueError(f"maps is empty: shape {tuple(maps.shape)}")
    if not maps.is_floating_point():
        raise TypeError(f"maps must be floating point, got {maps.dtype}")
    bad = ~torch.isfinite(maps)
    if bad.any():
        first = bad.flatten(1).any(1).nonzero()[0, 0].item()
        raise ValueError(f"maps[{first}] contains NaN or inf")
    return maps.float()


# ---------------------------------------------------------------------------------------------
# Normalise and resize
# ---------------------------------------------------------------------------------------------

def _linear_taps(n_in: int, n_out: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """cv2 INTER_LINEAR source taps and weights along one axis: (lo, hi, weight of hi), each (n_out,)."""
    scale = 1.0 / (n_out / n_in)
    pos = ((torch.arange(n_out, dtype=torch.float64, device=device) + 0.5) * scale - 0.5).float()
    lo = torch.floor(pos)
    weight = pos - lo
    lo = lo.long()
    weight = torch.where(lo < 0, 0.0, weight)
    lo = lo.clamp(min=0)
    weight = torch.where(lo >= n_in - 1, 0.0, weight)
    lo = lo.clamp(max=n_in - 1)
    return lo, (lo + 1).clamp(max=n_in - 1), weight


def _lerp(a: Tensor, b: Tensor, weight: Tensor) -> Tensor:
    """cv2's float32 ``a + (b - a) * w``, product and sum rounded once (fused multiply-add)."""
    out = (b - a).double()  # float32 difference, exact in float64
    out.mul_(weight.double()).add_(a)  # exact product, one rounding of the sum (then one to float32)
    return out.float()


def resize_bilinear(maps: Tensor, size: tuple[int, int], chunk: int = 32) -> Tensor:
    """cv2.resize(INTER_LINEAR) of float32 maps, (N, h, w) -> (N, H, W); separable, rows first.

    Works `chunk` maps at a time to bound the float64 temporaries.
    """
    H, W = size
    col_lo, col_hi, col_weight = _linear_taps(maps.shape[-1], W, maps.device)
    row_lo, row_hi, row_weight = _linear_taps(maps.shape[-2], H, maps.device)
    out = torch.empty(maps.shape[0], H, W, dtype=torch.float32, device=maps.device)
    for start in range(0, maps.shape[0], chunk):
        part = maps[start:start + chunk]
        rows = _lerp(part[..., col_lo], part[..., col_hi], col_weight)
        out[start:start + chunk] = _lerp(rows[:, row_lo, :], rows[:, row_hi, :], row_weight[:, None])
    return out


def normalize_maps(maps: Tensor, image_size: int | Sequence[int], protocol: str = "sat") -> Tensor:
    """Min-max normalise and resize as the protocol does, (N, h, w) -> (N, H, W) float32 in [0, 1]."""
    maps = check_maps(maps)
    size = image_hw(image_size)
    if check_protocol(protocol) == "sat":
        low = maps.amin((1, 2), keepdim=True)
        high = maps.amax((1, 2), keepdim=True)
        return resize_bilinear((maps - low) / (high - low + 1e-5), size)
    big = F.interpolate(maps[:, None], size=size, mode="bicubic", align_corners=False)[:, 0]
    big = big - big.amin((1, 2), keepdim=True)
    high = big.amax((1, 2), keepdim=True)
    # A constant map stays constant under bicubic resizing (up to rounding): zeros, as the official.
    flat = (maps.amax((1, 2)) == maps.amin((1, 2)))[:, None, None] | (high == 0)
    return torch.where(flat, 0.0, big / torch.where(flat, 1.0, high))


def threshold_levels(normalized: Tensor, thresholds: Sequence[float], protocol: str) -> tuple[Tensor, Tensor]:
    """Scores (N, H, W) and cuts (N, T) such that the foreground at threshold t is ``scores > cut``.

    SAT compares the float32 map with float32(t); wsoleval quantises to 8 bits (the scores are the
    uint8 levels) and compares with ``int(t * q.max())`` (a float32 cut, exact).
    """
    t = check_thresholds(thresholds).to(normalized.device)
    N = normalized.shape[0]
    if check_protocol(protocol) == "sat":
        return normalized, t.float().expand(N, -1)
    quantized = (normalized * 255).to(torch.uint8)
    peak = quantized.amax((1, 2)).double()
    return quantized, torch.floor(t[None, :] * peak[:, None]).float()


# ---------------------------------------------------------------------------------------------
# Components -> inclusive extents (device path and numba path agree exactly)
# ---------------------------------------------------------------------------------------------

def _plane_masks(scores: Tensor, cuts: Tensor, planes: Tensor) -> Tensor:
    """Foreground of the selected (map, threshold) planes, flat index map*T + t -> (P, H, W) bool."""
    T = cuts.shape[1]
    return scores[planes // T] > cuts.reshape(-1)[planes][:, None, None]


def _chunks(total: int, per_plane: int, device: torch.device) -> list[Tensor]:
    budget = MAX_PIXELS_CUDA if device.type == "cuda" else MAX_PIXELS_CPU
    step = max(1, budget // per_plane)
    return list(torch.arange(total, device=device).split(step))


def _border(H: int, W: int, device: torch.device) -> Tensor:
    edge = torch.zeros(H, W, dtype=torch.int64, device=device)
    edge[0, :] = edge[-1, :] = 1
    edge[:, 0] = edge[:, -1] = 1
    return edge.reshape(-1)


def _holes(mask: Tensor) -> tuple[Tensor, Tensor]:
    """Holes of (P, H, W) masks: 4-connected background labels and which pixels are holes (P, n)."""
    P, H, W = mask.shape
    n = H * W
    labels = cc.label_components(~mask, connectivity=4)
    reaches = cc.label_sums(labels, _border(H, W, mask.device).expand(P, n)) > 0
    background = ~mask.reshape(P, n)
    return labels, background & ~reaches.gather(1, labels[:, :n])


def _window_area2(filled: Tensor, labels: Tensor) -> Tensor:
    """Twice the outer-contour polygon area per label: 2x2 windows with 3 pixels count 1, with 4 count 2."""
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


def _extent_of(labels: Tensor, label: Tensor, width: int) -> Tensor:
    """Inclusive extent of one label per plane, (P, n+1) labels and (P,) label -> (P, 4)."""
    n = labels.shape[1] - 1
    index = torch.arange(n, device=labels.device)
    rows, cols = index // width, index % width
    member = labels[:, :n] == label[:, None]
    big = torch.tensor(n, device=labels.device)
    return torch.stack([torch.where(member, rows, big).amin(1), torch.where(member, cols, big).amin(1),
                        torch.where(member, rows, -1).amax(1), torch.where(member, cols, -1).amax(1)], 1)


def _root_rows(labels: Tensor, keep: Tensor | None, planes: Tensor, kind: int, width: int) -> tuple[Tensor, Tensor]:
    """(plane, kind + extent) rows for every component root of the chunk, (M,), (M, 5)."""
    root = cc.root_mask(labels)
    if keep is not None:
        root &= keep
    which, pixel = root.nonzero(as_tuple=True)
    extent = cc.label_extents(labels, width)[which, pixel]
    return planes[which], torch.cat([torch.full_like(extent[:, :1], kind), extent], 1)


def _device_components(scores: Tensor, cuts: Tensor, protocol: str, want_all: bool) -> tuple[Tensor, Tensor]:
    """Torch label propagation: largest extents (N, T, 4) (-1 if empty) and rows (M, 7) if `want_all`."""
    N, H, W = scores.shape
    T = cuts.shape[1]
    n = H * W
    index = torch.arange(n, device=scores.device)
    largest = torch.empty(N * T, 4, dtype=torch.int64, device=scores.device)
    plane_ids, row_list = [], []
    for planes in _chunks(N * T, (6 if want_all else 1) * n, scores.device):
        mask = _plane_masks(scores, cuts, planes)
        if protocol == "sat":
            labels = cc.label_components(mask, connectivity=8)
            key = cc.label_sums(labels)[:, :n] * (n + 1) + (n - index)  # most pixels, then first
            found = [(labels, None, 0)]
        else:
            background, hole = _holes(mask)
            filled = mask | hole.reshape(mask.shape)
            labels = cc.label_components(filled, connectivity=8)
            key = _window_area2(filled, labels)[:, :n] * (n + 1) + index  # largest area, then last
            found = [(cc.label_components(mask, connectivity=8), None, 0), (background, hole, 1)] if want_all else []
        best_key, best = torch.where(cc.root_mask(labels), key, -1).max(1)
        largest[planes] = torch.where(best_key[:, None] >= 0, _extent_of(labels, best, W), -1)
        for component_labels, keep, kind in found if want_all else []:
            plane, rows = _root_rows(component_labels, keep, planes, kind, W)
            plane_ids.append(plane)
            row_list.append(rows)
    rows = torch.zeros(0, 7, dtype=torch.int64, device=scores.device)
    if want_all:
        plane = torch.cat(plane_ids)
        rows = torch.cat([torch.stack([plane // T, plane % T], 1), torch.cat(row_list)], 1)
    return rearrange(largest, "(maps thresholds) extent -> maps thresholds extent", maps=N), rows


def _cpu_components(scores: Tensor, cuts: Tensor, protocol: str, want_all: bool) -> tuple[Tensor, Tensor]:
    """The numba component trees, same outputs as `_device_components`."""
    largest, rows = cc.map_boxes(scores.cpu().numpy(), cuts.cpu().numpy(), protocol == "wsoleval", want_all)
    return torch.from_numpy(largest).to(scores.device), torch.from_numpy(rows).to(scores.device)


def component_extents(scores: Tensor, cuts: Tensor, protocol: str, backend: str = "auto",
                      want_all: bool = False) -> tuple[Tensor, Tensor]:
    """Largest component's extent per (map, threshold), (N, T, 4) (-1: nothing above the cut), and
    with `want_all` every component (and wsoleval hole) as rows (M, 7): map, threshold, kind
    (0 component, 1 hole), min_row, min_col, max_row, max_col."""
    if backend not in ("auto", "propagate", "union_find"):
        raise ValueError(f"backend must be 'auto', 'propagate' or 'union_find', got {backend!r}")
    if backend == "auto":
        backend = "propagate" if scores.is_cuda else "union_find"
    run = _device_components if backend == "propagate" else _cpu_components
    return run(scores, cuts, check_protocol(protocol), want_all)


def pad_rows(rows: Tensor, boxes: Tensor, N: int, T: int) -> tuple[Tensor, Tensor]:
    """Rows (M, 7) with their boxes (M, 4) -> padded (N, T, K, 4) boxes and valid (N, T, K).

    Boxes are ordered canonically (kind, then extent); (map, threshold) pairs without rows hold
    one invalid-extent placeholder, filled by the caller.
    """
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


def boxes_from_maps(maps: Tensor, thresholds: Sequence[float], image_size: int | Sequence[int],
                    mode: str = "largest", protocol: str = "sat", backend: str = "auto"):
    """Boxes of thresholded maps, (N, h, w) -> (N, T, 4) int64 xyxy pixels, batched on the maps' device.

    Per map: normalise, resize to `image_size`, threshold at every t, 8-connected components.
    ``mode="largest"`` returns the largest component's box, (N, T, 4). ``mode="all"`` returns
    ``(boxes, valid)``, (N, T, K, 4) and (N, T, K) bool: every component's box (with wsoleval, also
    every hole contour's box; MaxBoxAccV2's multi-contour variant), padded to the largest count K.
    Conventions per protocol are in the module docstring. `backend`: "propagate" (torch label
    propagation, any device), "union_find" (numba component tree, CPU), or "auto" (the first on
    CUDA, the second on CPU); both give identical boxes.
    """
    if mode not in ("largest", "all"):
        raise ValueError(f"mode must be 'largest' or 'all', got {mode!r}")
    scores, cuts = threshold_levels(normalize_maps(maps, image_size, protocol), thresholds, protocol)
    largest, rows = component_extents(scores, cuts, protocol, backend, want_all=mode == "all")
    largest = extents_to_boxes(largest, protocol, image_size)
    if mode == "largest":
        return largest
    boxes, valid = pad_rows(rows, rows_to_boxes(rows, protocol, image_size), *cuts.shape)
    empty = ~valid[..., 0]  # nothing above the threshold: the protocol's empty-prediction box
    boxes[..., 0, :] = torch.where(empty[..., None], largest, boxes[..., 0, :])
    valid[..., 0] = True
    return boxes, valid


def rows_to_boxes(rows: Tensor, protocol: str, image_size: int | Sequence[int]) -> Tensor:
    """Component rows (M, 7) from `component_extents` -> xyxy boxes (M, 4) (holes as hole contours)."""
    return extents_to_boxes(rows[:, 3:], protocol, image_size, holes=rows[:, 2] == 1)


# ---------------------------------------------------------------------------------------------
# IoU and ground-truth boxes
# ---------------------------------------------------------------------------------------------

def box_iou(boxes: Tensor, gt_boxes: Tensor) -> Tensor:
    """Pairwise IoU with the +1 ("inclusive") formula, (..., A, 4) x (..., K, 4) -> (..., A, K) float64.

    ``inter = max(0, min(x1) - max(x0) + 1) * max(0, min(y1) - max(y0) + 1)``, areas
    ``(x1 - x0 + 1) * (y1 - y0 + 1)``, as both official codes.
    """
    a = boxes.double()[..., :, None, :]
    b = gt_boxes.double()[..., None, :, :]
    width = (torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0]) + 1).clamp(min=0)
    height = (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1]) + 1).clamp(min=0)
    inter = width * height
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    return inter / (area_a + area_b - inter)


def check_gt_boxes(gt_boxes: Sequence[Tensor] | Tensor, image_size: int | Sequence[int],
                   batch: int | None = None) -> list[Tensor]:
    """Validate per-image GT boxes (each (K, 4) xyxy) -> list of float64 tensors.

    Coordinates must be finite, 0 <= x0 <= x1 <= W and 0 <= y0 <= y1 <= H. K = 0 is allowed: an
    image whose every box the centre crop cut away (`satlib.data.transforms.visible_boxes`) is scored
    as a miss at every threshold, as the official IoU with such boxes is 0.
    """
    H, W = image_hw(image_size)
    if isinstance(gt_boxes, Tensor) and gt_boxes.dim() == 2:
        raise ValueError(f"gt_boxes must be per image: a list of (K, 4) tensors or a (B, K, 4) tensor, "
                         f"got shape {tuple(gt_boxes.shape)}")
    boxes = [torch.as_tensor(b) for b in gt_boxes]
    if batch is not None and len(boxes) != batch:
        raise ValueError(f"gt_boxes has {len(boxes)} images but the maps have {batch}")
    for i, b in enumerate(boxes):
        if b.dim() != 2 or b.shape[-1] != 4:
            raise ValueError(f"gt_boxes[{i}] must be (K, 4), got shape {tuple(b.shape)}")
    checked = [b.double() for b in boxes]
    everything = torch.cat([b.cpu() for b in checked])
    x0, y0, x1, y1 = everything.unbind(-1)
    ok = torch.isfinite(everything).all(-1) & (0 <= x0) & (x0 <= x1) & (x1 <= W) & (0 <= y0) & (y0 <= y1) & (y1 <= H)
    if not ok.all():
        first = int((~ok).nonzero()[0, 0])
        image = int(np.searchsorted(np.cumsum([b.shape[0] for b in checked]), first, side="right"))
        row = first - sum(b.shape[0] for b in checked[:image])
        raise ValueError(f"gt_boxes[{image}] row {row}: {everything[first].tolist()} is not a finite box inside "
                         f"the {H}x{W} image (need 0 <= x0 <= x1 <= W, 0 <= y0 <= y1 <= H)")
    return checked


# Under the +1 IoU formula this box meets no box inside the image (intersection and area 0): IoU 0.
NO_BOX = (0.0, 0.0, -1.0, -1.0)


def pad_gt_boxes(gt_boxes: list[Tensor], device: torch.device) -> tuple[Tensor, Tensor]:
    """Per-image (K_i, 4) boxes -> (B, K, 4) float64 padded with each image's first box, and valid (B, K).

    An image with no box is padded with `NO_BOX`, whose IoU with any prediction is 0.
    """
    K = max(1, max(b.shape[0] for b in gt_boxes))
    firsts = [b[:1] if len(b) else torch.tensor([NO_BOX], dtype=b.dtype) for b in gt_boxes]
    padded = torch.stack([torch.cat([b, first.expand(K - b.shape[0], 4)])
                          for b, first in zip(gt_boxes, firsts)]).to(device)
    valid = torch.stack([torch.arange(K) < b.shape[0] for b in gt_boxes]).to(device)
    return padded, valid


def max_iou(boxes: Tensor, gt_boxes: Tensor, box_valid: Tensor | None = None) -> Tensor:
    """Best IoU of each image's boxes with its GT boxes.

    boxes (B, T, 4) or (B, T, A, 4) with box_valid (B, T, A); gt_boxes (B, K, 4) padded by
    repeating a real box (see `pad_gt_boxes`), so padding never changes the max -> (B, T) float64.
    """
    if boxes.dim() == 3:
        return box_iou(boxes, gt_boxes).amax(-1)  # (B, T, 4) x (B, K, 4) -> (B, T, K)
    T = boxes.shape[1]
    flat = rearrange(boxes, "batch thresholds boxes xyxy -> batch (thresholds boxes) xyxy")
    best = box_iou(flat, gt_boxes).amax(-1)  # (B, T*A): best over GT boxes
    iou = rearrange(best, "batch (thresholds boxes) -> batch thresholds boxes", thresholds=T)
    if box_valid is not None:
        iou = torch.where(box_valid, iou, -1.0)
    return iou.amax(-1)
