"""Trivial baselines: GT-known of boxes that never look at the image, to read a model's number against.

"whole_image" predicts the full image; "centred_mean_box" a centred box of the split's mean
relative GT size. Scored as the evaluator scores a box: the +1 IoU (`satlib.evaluation.iou`)
with the best of the image's GT boxes, a hit at IoU >= 0.5.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from satlib.data.cub import read_cub
from satlib.data.io import image_size
from satlib.data.records import DataError, Problems
from satlib.evaluation.iou import max_iou, pad_gt_boxes
from satlib.evaluation.metrics import LOC_IOU

BASELINES = ("whole_image", "centred_mean_box")


def baseline_boxes(sizes: np.ndarray, mean_size: np.ndarray) -> np.ndarray:
    """Each baseline's box per image, (N, 2) image (w, h) and (2,) mean relative (w, h) -> (N, 2, 4)
    inclusive xyxy pixels, in `BASELINES` order."""
    w, h = sizes[:, 0], sizes[:, 1]
    whole = np.stack([np.zeros_like(w), np.zeros_like(h), w - 1, h - 1], -1)
    bw, bh = mean_size[0] * w, mean_size[1] * h
    centred = np.stack([(w - bw) / 2, (h - bh) / 2, (w + bw) / 2 - 1, (h + bh) / 2 - 1], -1)
    return np.stack([whole, centred], 1)


def trivial_baselines(root: str | Path, split: str = "test") -> dict[str, float]:
    """GT-known (%, IoU >= 0.5) of each of `BASELINES` on a split of a CUB-layout dataset at `root`.

    Boxes in original pixels; an image counts when the box matches any of its GT boxes.
    """
    records, _ = read_cub(Path(root), split, Problems())
    if not records:
        raise DataError(f"{root}: no images in split {split!r}")
    sizes = np.array([image_size(r.path) for r in records], dtype=np.float64)  # (N, 2) w, h
    relative = np.concatenate([(r.boxes[:, 2:] - r.boxes[:, :2] + 1) / size for r, size in zip(records, sizes)])
    boxes = torch.from_numpy(baseline_boxes(sizes, relative.mean(0)))  # (N, baselines, 4)
    gt, _ = pad_gt_boxes([torch.from_numpy(r.boxes) for r in records], torch.device("cpu"))
    hits = (max_iou(boxes, gt) >= LOC_IOU / 100).sum(0)  # (baselines,)
    return {name: 100.0 * int(count) / len(records) for name, count in zip(BASELINES, hits)}
