"""Slow, per-image references for the evaluation tests: plain loops and scipy.ndimage.label.

One map and one threshold at a time, written from the official code's description rather than
from satlib's implementation.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

EIGHT = np.ones((3, 3), dtype=bool)
FOUR = ndimage.generate_binary_structure(2, 1)


def sat_foreground(normalized: np.ndarray, t: float) -> np.ndarray:
    return normalized > np.float32(t)


def wsoleval_foreground(normalized: np.ndarray, t: float) -> np.ndarray:
    quantized = (normalized * 255).astype(np.uint8)
    return quantized > int(t * np.max(quantized))


def _extent(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(mask)
    return rows.min(), cols.min(), rows.max(), cols.max()


def sat_largest_box(fg: np.ndarray) -> list[int]:
    """Largest 8-connected component by pixels, ties to the lowest label (raster order)."""
    H, W = fg.shape
    labels, count = ndimage.label(fg, EIGHT)
    if count == 0:
        return [0, 0, W, H]
    sizes = [(labels == k).sum() for k in range(1, count + 1)]
    best = 1 + sizes.index(max(sizes))  # first maximum
    r0, c0, r1, c1 = _extent(labels == best)
    return [c0, r0, c1 + 1, r1 + 1]


def polygon_area2(filled: np.ndarray) -> int:
    """Twice the area of the polygon through the outer boundary pixel centres of a hole-free set."""
    total = 0
    H, W = filled.shape
    for r in range(H - 1):
        for c in range(W - 1):
            inside = int(filled[r, c]) + int(filled[r + 1, c]) + int(filled[r, c + 1]) + int(filled[r + 1, c + 1])
            total += {3: 1, 4: 2}.get(inside, 0)
    return total


def _wsoleval_box(r0: int, c0: int, r1: int, c1: int, H: int, W: int) -> list[int]:
    return [c0, r0, min(c1 + 1, W - 1), min(r1 + 1, H - 1)]


def wsoleval_largest_box(fg: np.ndarray) -> list[int]:
    """cv2 max(contours, key=contourArea): top-level components, holes filled, ties to the last."""
    H, W = fg.shape
    labels, count = ndimage.label(fg, EIGHT)
    if count == 0:
        return [0, 0, 0, 0]
    best, best_area = None, -1
    for k in range(1, count + 1):  # labels follow raster order of first pixels
        filled = ndimage.binary_fill_holes(labels == k)
        area = polygon_area2(filled)
        if area >= best_area:
            best, best_area = filled, area
    return _wsoleval_box(*_extent(best), H, W)


def wsoleval_all_boxes(fg: np.ndarray) -> list[list[int]]:
    """Every outer contour's box and every hole contour's box."""
    H, W = fg.shape
    labels, count = ndimage.label(fg, EIGHT)
    if count == 0:
        return [[0, 0, 0, 0]]
    boxes = [_wsoleval_box(*_extent(labels == k), H, W) for k in range(1, count + 1)]
    background, holes = ndimage.label(~fg, FOUR)
    for k in range(1, holes + 1):
        r0, c0, r1, c1 = _extent(background == k)
        if r0 == 0 or c0 == 0 or r1 == H - 1 or c1 == W - 1:
            continue  # reaches the border: the outside, not a hole
        boxes.append(_wsoleval_box(r0 - 1, c0 - 1, r1 + 1, c1 + 1, H, W))
    return boxes


def sat_all_boxes(fg: np.ndarray) -> list[list[int]]:
    H, W = fg.shape
    labels, count = ndimage.label(fg, EIGHT)
    if count == 0:
        return [[0, 0, W, H]]
    return [[c0, r0, c1 + 1, r1 + 1] for r0, c0, r1, c1 in (_extent(labels == k) for k in range(1, count + 1))]


def iou(a: list[float], b: list[float]) -> float:
    """The official IoU (utils/accuracy.py IoU, evaluation.calculate_multiple_iou)."""
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0, x1 - x0 + 1) * max(0, y1 - y0 + 1)
    area_a = (a[2] - a[0] + 1) * (a[3] - a[1] + 1)
    area_b = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    return inter / float(area_a + area_b - inter)


def sat_metrics(normalized, gt_boxes, thresholds, logits=None, labels=None) -> dict:
    """SAT evaluator.py's loop on normalised maps (N, H, W): per image, per threshold."""
    T = len(thresholds)
    meters = {k: [0.0] * T for k in ("gt", "top1", "top5", "iou30", "iou50", "iou70")}
    top1 = top5 = 0
    n = len(normalized)
    for i in range(n):
        if logits is not None:
            order = np.argsort(-np.asarray(logits[i]), kind="stable")
            prec1 = order[0] == labels[i]
            prec5 = labels[i] in order[:5]
            top1 += prec1
            top5 += prec5
        for j, t in enumerate(thresholds):
            box = sat_largest_box(sat_foreground(normalized[i], t))
            best = max(iou(box, list(g)) for g in gt_boxes[i])
            meters["gt"][j] += 100 * (best >= 0.5)
            for k in (30, 50, 70):
                meters[f"iou{k}"][j] += 100 * (best >= k / 100)
            if logits is not None:
                meters["top1"][j] += 100 * (prec1 and best >= 0.5)
                meters["top5"][j] += 100 * (prec5 and best >= 0.5)
    avg = {k: [x / n for x in v] for k, v in meters.items()}
    best_j, best_loc = 0, 0
    for j in range(T):
        if avg["gt"][j] + avg["top1"][j] > best_loc:
            best_j, best_loc = j, avg["gt"][j] + avg["top1"][j]
    out = {"gt_known": avg["gt"][best_j], "best_threshold": thresholds[best_j],
           "maxboxacc": max(avg["gt"]), **{f"iou{k}": avg[f"iou{k}"][best_j] for k in (30, 50, 70)}, "images": n}
    out["maxboxacc_v2"] = (out["iou30"] + out["iou50"] + out["iou70"]) / 3
    if logits is not None:
        out.update(top1_loc=avg["top1"][best_j], top5_loc=avg["top5"][best_j],
                   top1_cls=100 * top1 / n, top5_cls=100 * top5 / n)
    return out


def wsoleval_metrics(normalized, gt_boxes, thresholds) -> dict:
    """wsolevaluation BoxEvaluator with and without multi-contour evaluation."""
    T = len(thresholds)
    single = {k: np.zeros(T) for k in (30, 50, 70)}
    multi = {k: np.zeros(T) for k in (30, 50, 70)}
    for i in range(len(normalized)):
        for j, t in enumerate(thresholds):
            fg = wsoleval_foreground(normalized[i], t)
            best_single = max(iou(wsoleval_largest_box(fg), list(g)) for g in gt_boxes[i])
            best_multi = max(iou(b, list(g)) for b in wsoleval_all_boxes(fg) for g in gt_boxes[i])
            for k in (30, 50, 70):
                single[k][j] += best_single >= k / 100
                multi[k][j] += best_multi >= k / 100
    n = len(normalized)
    v1 = single[50] * 100.0 / n
    out = {"maxboxacc": v1.max(), "best_threshold": thresholds[int(np.argmax(v1))], "gt_known": v1.max(),
           **{f"iou{k}": (multi[k] * 100.0 / n).max() for k in (30, 50, 70)}, "images": n}
    out["maxboxacc_v2"] = (out["iou30"] + out["iou50"] + out["iou70"]) / 3
    return out
