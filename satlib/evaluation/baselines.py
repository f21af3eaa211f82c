"""Trivial baselines: GT-known of boxes that never look at the image, to read a model's number against.

"whole_image" predicts the full image; "centred_mean_box" a centred box of the split's mean
relative GT size. Scored as the evaluator scores a box: the +1 IoU (`satlib.evaluation.iou`)
with the best of the image's GT boxes, a hit at IoU >= 0.5. The sizes and boxes of a CUB-layout
split come from `satlib.data.cub.read_split_boxes`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

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


def trivial_baselines(sizes: np.ndarray, gt_boxes: Sequence[np.ndarray]) -> dict[str, float]:
    """GT-known (%, IoU >= 0.5) of each of `BASELINES` on N images: (N, 2) sizes (w, h) and each image's GT
    boxes (K, 4), inclusive xyxy in its own pixels; an image counts when the box matches any of its boxes."""
    sizes = np.asarray(sizes, dtype=np.float64).reshape(-1, 2)
    if not len(sizes) or len(sizes) != len(gt_boxes):
        raise ValueError(f"trivial_baselines: {len(sizes)} image sizes and {len(gt_boxes)} box lists "
                         f"(expected the same number, at least one)")
    gt_boxes = [np.asarray(boxes, dtype=np.float64).reshape(-1, 4) for boxes in gt_boxes]
    relative = np.concatenate([(boxes[:, 2:] - boxes[:, :2] + 1) / size for boxes, size in zip(gt_boxes, sizes)])
    boxes = torch.from_numpy(baseline_boxes(sizes, relative.mean(0)))  # (N, baselines, 4)
    gt, _ = pad_gt_boxes([torch.from_numpy(b) for b in gt_boxes], torch.device("cpu"))
    hits = (max_iou(boxes, gt) >= LOC_IOU / 100).sum(0)  # (baselines,)
    return {name: 100.0 * int(count) / len(sizes) for name, count in zip(BASELINES, hits)}
