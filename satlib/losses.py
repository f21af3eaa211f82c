"""SAT's training loss: cross-entropy plus the batch area constraint and the normalization constraint.

    loss = CE(logits, labels) + λ_area · |mean_batch(mean_pixels(M)) − area_thr| + λ_norm · mean(s ⊙ (1 − s))

where M (B, rows, cols) is the localization map and s = M smoothed by a fixed 3×3 Gaussian (zero
padding). The area term pulls the batch's mean map value to `area_thr` (CUB 0.25, ImageNet 0.35 in the
official code); the normalization term pushes each smoothed value towards 0 or 1. A training schedule
may scale both constraints by a weight w in [0, 1] (`constraint_weight`): λ_area · w and λ_norm · w.

The CAM and TS-CAM baselines train with cross-entropy alone (`ClassificationLoss`); `build_loss`
picks the loss from a model's `method`, the one place the two differ.

This module takes tensors and never imports the model: `SATLoss` reads any output with `.logits`
(B, classes) and `.loc_map` (B, rows, cols), such as `satlib.models.SATOutput`. The loss is computed
in fp32 whatever the autocast around it (autocast would run the smoothing conv2d in bf16: a kernel
summing to 0.9988 and a normalization term off in the third digit).
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from satlib.kernels import gaussian_kernel


def full_precision(device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast off on `device` inside the block (ops run in their inputs' dtype), where autocast exists."""
    if not torch.amp.is_autocast_available(device.type):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, enabled=False)


def area_loss(loc_map: Tensor, area_thr: float) -> Tensor:
    """Batch area constraint |mean over batch and pixels of M − area_thr|, (B, rows, cols) -> scalar."""
    return (loc_map.mean() - area_thr).abs()


def normalization_loss(loc_map: Tensor, kernel: Tensor | None = None) -> Tensor:
    """Mean of s ⊙ (1 − s) for s the Gaussian-smoothed map, (B, rows, cols) -> scalar (fp32 under autocast)."""
    kernel = gaussian_kernel() if kernel is None else kernel
    if loc_map.dtype in (torch.float16, torch.bfloat16):
        loc_map = loc_map.float()
    kernel = rearrange(kernel, "kh kw -> 1 1 kh kw").to(loc_map)
    with full_precision(loc_map.device):
        smooth = F.conv2d(rearrange(loc_map, "b rows cols -> b 1 rows cols"), kernel,
                          padding=kernel.shape[-1] // 2)
        return (smooth * (1 - smooth)).mean()


class SATLoss(nn.Module):
    """CE + λ_area · area constraint + λ_norm · normalization constraint on a model's output."""

    def __init__(self, area_thr: float = 0.25, lambda_area: float = 1.0, lambda_norm: float = 1.0,
                 kernel_size: int = 3, nsig: float = 6.0) -> None:
        super().__init__()
        if not 0.0 <= area_thr <= 1.0 or math.isnan(area_thr):
            raise ValueError(f"area_thr={area_thr} must lie in [0, 1] (the map's values do)")
        self.area_thr = area_thr
        self.lambda_area = lambda_area
        self.lambda_norm = lambda_norm
        self.register_buffer("kernel", gaussian_kernel(kernel_size, nsig), persistent=False)

    def forward(self, out: Any, labels: Tensor, *, constraint_weight: float = 1.0) -> tuple[Tensor, dict[str, Tensor]]:
        """Total loss (scalar) and its unweighted, detached terms {"cls", "area", "norm"}.

        `out` has `.logits` (B, classes) and `.loc_map` (B, rows, cols); labels are (B,) class indices.
        `constraint_weight` scales both constraints (a schedule's ramp); 1 is the official loss. Computed in
        fp32 under any autocast.
        """
        loc_map = out.loc_map.float()
        with full_precision(loc_map.device):  # every term and the total in fp32, whatever the autocast
            terms = {
                "cls": F.cross_entropy(out.logits.float(), labels),
                "area": area_loss(loc_map, self.area_thr),
                "norm": normalization_loss(loc_map, self.kernel),
            }
            lambda_area, lambda_norm = constraint_weight * self.lambda_area, constraint_weight * self.lambda_norm
            total = terms["cls"] + lambda_area * terms["area"] + lambda_norm * terms["norm"]
        return total, {name: value.detach() for name, value in terms.items()}

    def extra_repr(self) -> str:
        return f"area_thr={self.area_thr}, lambda_area={self.lambda_area}, lambda_norm={self.lambda_norm}"


class ClassificationLoss(nn.Module):
    """Cross-entropy alone, the training loss of the CAM and TS-CAM baselines; called as `SATLoss`.

    The "area" and "norm" terms it reports are zeros, so a training log has the same columns.
    """

    def forward(self, out: Any, labels: Tensor, *, constraint_weight: float = 1.0) -> tuple[Tensor, dict[str, Tensor]]:
        """Cross-entropy of `out.logits` (B, classes) against labels (B,); `constraint_weight` is unused."""
        cls = F.cross_entropy(out.logits.float(), labels)
        zero = torch.zeros((), device=cls.device)
        return cls, {"cls": cls.detach(), "area": zero, "norm": zero}


def build_loss(method: str, *, area_thr: float = 0.25, lambda_area: float = 1.0,
               lambda_norm: float = 1.0) -> nn.Module:
    """The training loss of a localization method (a model's `method`): SAT's constrained loss for "sat",
    cross-entropy alone for the "cam" and "tscam" baselines (their maps are read, never trained)."""
    if method == "sat":
        return SATLoss(area_thr, lambda_area, lambda_norm)
    if method in ("cam", "tscam"):
        return ClassificationLoss()
    raise ValueError(f"no training loss for method {method!r}: expected 'sat', 'cam' or 'tscam'")
