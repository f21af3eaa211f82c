"""The IoU that scores a box against an image's GT boxes, and GT boxes padded to one tensor.

Both official codes use the +1 ("inclusive") formula; it is the only IoU in satlib.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor

# Under the +1 IoU formula this box meets no box inside the image (intersection and area 0): IoU 0.
NO_BOX = (0.0, 0.0, -1.0, -1.0)


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


def pad_gt_boxes(gt_boxes: list[Tensor], device: torch.device) -> tuple[Tensor, Tensor]:
    """Per-image (K_i, 4) boxes -> (B, K, 4) float64 on `device` padded with each image's first box,
    and valid (B, K).

    An image with no box is padded with `NO_BOX`, whose IoU with any prediction is 0. Everything
    is built on `device` (boxes on a GPU stay there, the filler included).
    """
    K = max(1, max(b.shape[0] for b in gt_boxes))
    padded, valid = [], []
    for boxes in gt_boxes:
        boxes = boxes.to(device=device, dtype=torch.float64)
        first = boxes[:1] if len(boxes) else torch.tensor([NO_BOX], dtype=torch.float64, device=device)
        padded.append(torch.cat([boxes, first.expand(K - len(boxes), 4)]))
        valid.append(torch.arange(K, device=device) < len(boxes))
    return torch.stack(padded), torch.stack(valid)


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
