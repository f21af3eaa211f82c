"""The protocols' first two steps: min-max normalise and resize the maps to the image.

SAT normalises the raw map and resizes it bilinearly, as cv2's float32 ``INTER_LINEAR`` does,
bit for bit (`resize_bilinear`: ``a + (b - a) * w`` with one rounding, per pass, rows first).
wsoleval resizes the raw map bicubically and normalises after; torch's bicubic kernel is cv2's
``INTER_CUBIC`` (a = -0.75) up to ~1 ulp on some pixels. The protocol table is in
`satlib.evaluation.boxes`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from satlib.evaluation.checks import check_maps, check_protocol, image_hw


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
