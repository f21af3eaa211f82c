"""PxAP: area under the pixel precision-recall curve, streamed as per-threshold histograms.

As wsolevaluation's ``MaskEvaluator``: bin edges are the thresholds followed by 1, 2, 3 (bins
``[t_i, t_i+1)``, ..., ``[1, 2)``, ``[2, 3]``); scores of GT-foreground pixels (mask 1) and of
GT-background pixels (mask 0) are histogrammed, ignored pixels (mask 255) are skipped; the
histograms are accumulated in descending order into TP/FP, and
``PxAP = 100 * sum(precision[1:] * diff(recall))`` over thresholds with a positive prediction.
Memory: two (T + 2,) histograms, whatever the number of images.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

IGNORE = 255


def combine_masks(instance_masks: Tensor, ignore_box_mask: Tensor) -> Tensor:
    """GT mask as wsolevaluation's ``get_mask``: (K, H, W) instances + (H, W) ignore boxes -> (H, W) uint8.

    1 where any instance is > 0.5, 255 where the ignore box is > 0.5 and no instance is, else 0.
    """
    if instance_masks.dim() != 3 or instance_masks.shape[1:] != ignore_box_mask.shape:
        raise ValueError(f"instance masks (K, H, W) {tuple(instance_masks.shape)} and ignore mask (H, W) "
                         f"{tuple(ignore_box_mask.shape)} do not match")
    foreground = (instance_masks > 0.5).any(0)
    ignore = (ignore_box_mask > 0.5) & ~foreground
    return foreground.to(torch.uint8) + IGNORE * ignore.to(torch.uint8)


def check_masks(gt_masks: Tensor, shape: tuple[int, int, int]) -> Tensor:
    """GT masks (B, H, W) with values in {0, 1, 255} (bool allowed) -> uint8; a clear error otherwise."""
    if not isinstance(gt_masks, Tensor):
        raise TypeError(f"gt_masks must be a torch.Tensor, got {type(gt_masks).__name__}")
    if tuple(gt_masks.shape) != tuple(shape):
        raise ValueError(f"gt_masks has shape {tuple(gt_masks.shape)}, expected (B, H, W) = {tuple(shape)}")
    if gt_masks.is_floating_point() and not torch.isfinite(gt_masks).all():
        raise ValueError("gt_masks contains NaN or inf")
    masks = gt_masks.to(torch.uint8) if gt_masks.dtype == torch.bool else gt_masks
    bad = (masks != 0) & (masks != 1) & (masks != IGNORE)
    if bad.any():
        image = int(bad.flatten(1).any(1).nonzero()[0, 0])
        raise ValueError(f"gt_masks[{image}] has values other than 0, 1 and {IGNORE} (ignore)")
    return masks.to(torch.uint8)


class PixelAPMeter:
    """Streaming PxAP over normalised score maps in [0, 1] and GT masks ({0, 1, 255})."""

    def __init__(self, thresholds: Sequence[float]):
        edges = torch.as_tensor(list(thresholds) + [1.0, 2.0, 3.0], dtype=torch.float64)
        if not (edges[1:] > edges[:-1]).all():
            raise ValueError(f"PxAP thresholds must increase and stay below 1, got {list(thresholds)}")
        self.edges = edges
        self.true_hist = torch.zeros(len(edges) - 1, dtype=torch.int64)
        self.false_hist = torch.zeros(len(edges) - 1, dtype=torch.int64)

    def _histogram(self, scores: Tensor) -> Tensor:
        """np.histogram(scores, bins=edges)[0] (last bin closed), on the scores' device -> (T+2,)."""
        edges = self.edges.to(scores.device)
        scores = scores.double()
        bins = torch.bucketize(scores, edges, right=True) - 1
        bins = torch.where(scores == edges[-1], len(edges) - 2, bins)
        inside = (bins >= 0) & (bins < len(edges) - 1)
        return torch.bincount(bins[inside], minlength=len(edges) - 1).cpu()

    def update(self, scores: Tensor, gt_masks: Tensor) -> None:
        """Add (B, H, W) normalised scores with (B, H, W) uint8 masks."""
        self.true_hist += self._histogram(scores[gt_masks == 1])
        self.false_hist += self._histogram(scores[gt_masks == 0])

    def compute(self) -> float:
        """PxAP in percent; errors as the official when there is no positive GT or prediction."""
        true_hist, false_hist = self.true_hist.double().numpy(), self.false_hist.double().numpy()
        tp = true_hist[::-1].cumsum()
        fn = true_hist.sum() - tp
        fp = false_hist[::-1].cumsum()
        if ((tp + fn) <= 0).all():
            raise RuntimeError("PxAP: no positive ground truth in the evaluated masks")
        if ((tp + fp) <= 0).all():
            raise RuntimeError("PxAP: no positive prediction in the evaluated maps")
        predicted = (tp + fp) != 0
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = tp / (tp + fp)
            recall = tp / (tp + fn)
        return float((precision[1:] * np.diff(recall))[predicted[1:]].sum() * 100)
