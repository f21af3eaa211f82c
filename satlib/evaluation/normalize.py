"""The protocols' first two steps: min-max normalise and resize the maps to the image.

SAT normalises the raw map and resizes it bilinearly, as cv2's float32 ``INTER_LINEAR`` does,
bit for bit (`resize_bilinear`: ``a + (b - a) * w`` with one rounding, per pass, rows first).
wsoleval resizes the raw map bicubically and normalises after (`resize_bicubic`): cv2's own
float32 ``INTER_CUBIC`` code bit for bit (a = -0.75, float32 taps, columns then rows in its
order of operations). Default OpenCV wheels hand that resize to Intel IPP, whose rounding
differs by ~1 ulp on about half the pixels (and may differ between CPUs); after 8-bit
quantisation that moves about 1 pixel in 10^5 by one level. The protocol table is in
`satlib.evaluation.boxes`.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from satlib.evaluation.checks import check_maps, check_protocol, image_hw


def linear_taps(n_in: int, n_out: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
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
    col_lo, col_hi, col_weight = linear_taps(maps.shape[-1], W, maps.device)
    row_lo, row_hi, row_weight = linear_taps(maps.shape[-2], H, maps.device)
    out = torch.empty(maps.shape[0], H, W, dtype=torch.float32, device=maps.device)
    for start in range(0, maps.shape[0], chunk):
        part = maps[start:start + chunk]
        rows = _lerp(part[..., col_lo], part[..., col_hi], col_weight)
        out[start:start + chunk] = _lerp(rows[:, row_lo, :], rows[:, row_hi, :], row_weight[:, None])
    return out


@lru_cache(maxsize=64)
def cubic_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """cv2 INTER_CUBIC source taps along one axis: indices (n_out, 4) clamped to the edge and float32
    weights (n_out, 4), computed in float32 as cv2's ``interpolateCubic`` does (A = -0.75)."""
    f32 = np.float32
    scale = 1.0 / (n_out / n_in)  # cv2: 1. / ((double)dsize / ssize)
    pos = ((np.arange(n_out) + 0.5) * scale - 0.5).astype(f32)
    start = np.floor(pos)
    x = (pos - start).astype(f32)
    A, one = f32(-0.75), f32(1)
    w0 = ((A * (x + one) - 5 * A) * (x + one) + 8 * A) * (x + one) - 4 * A
    w1 = ((A + 2) * x - (A + 3)) * x * x + one
    w2 = ((A + 2) * (one - x) - (A + 3)) * (one - x) * (one - x) + one
    w3 = one - w0 - w1 - w2
    index = np.clip(start.astype(np.int64)[:, None] + np.arange(-1, 3), 0, n_in - 1)
    return index, np.stack([w0, w1, w2, w3], axis=1).astype(f32)


@lru_cache(maxsize=64)
def _cubic_taps_on(n_in: int, n_out: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """`cubic_taps` as tensors on `device`, made once (a copy from pageable memory would sync CUDA)."""
    index, weight = cubic_taps(n_in, n_out)
    return torch.from_numpy(index).to(device), torch.from_numpy(weight).to(device)


def resize_bicubic(maps: Tensor, size: tuple[int, int], chunk: int = 16) -> Tensor:
    """cv2.resize(INTER_CUBIC) of float32 maps without IPP, bit for bit, (N, h, w) -> (N, H, W).

    Columns first, ``((s0*w0 + s1*w1) + s2*w2) + s3*w3``; then rows as cv2's 4-lane SIMD loop
    sums them, ``s0*w0 + (s1*w1 + (s2*w2 + s3*w3))``, except the last W mod 4 columns, which its
    scalar tail sums left to right. Every product and sum is a float32 rounding, on any device.
    Works `chunk` maps at a time so the temporaries stay in cache.
    """
    H, W = size
    col_index, col_weight = _cubic_taps_on(maps.shape[-1], W, maps.device)
    row_index, row_weight = _cubic_taps_on(maps.shape[-2], H, maps.device)
    row_weight = row_weight[:, :, None]
    vector = W - W % 4  # columns the SIMD loop covers
    out = torch.empty(maps.shape[0], H, W, dtype=torch.float32, device=maps.device)
    for start in range(0, maps.shape[0], chunk):
        part = maps[start:start + chunk]
        cols = part[..., col_index[:, 0]] * col_weight[:, 0]
        for k in range(1, 4):
            cols += part[..., col_index[:, k]] * col_weight[:, k]
        rows = out[start:start + chunk]
        torch.mul(cols[:, row_index[:, 3]], row_weight[:, 3], out=rows)
        for k in (2, 1, 0):
            rows += cols[:, row_index[:, k]] * row_weight[:, k]
        if vector < W:
            tail = cols[..., vector:]
            rows[..., vector:] = tail[:, row_index[:, 0]] * row_weight[:, 0]
            for k in range(1, 4):
                rows[..., vector:] += tail[:, row_index[:, k]] * row_weight[:, k]
    return out


def normalize_maps(maps: Tensor, image_size: int | Sequence[int], protocol: str = "sat") -> Tensor:
    """Min-max normalise and resize as the protocol does, (N, h, w) -> (N, H, W) float32 in [0, 1]."""
    return normalized_maps(check_maps(maps), image_hw(image_size), check_protocol(protocol))


def normalized_maps(maps: Tensor, size: tuple[int, int], protocol: str) -> Tensor:
    """`normalize_maps` of checked float32 maps, (N, h, w) -> (N, H, W): no host sync on CUDA."""
    if protocol == "sat":
        low = maps.amin((1, 2), keepdim=True)
        high = maps.amax((1, 2), keepdim=True)
        return resize_bilinear((maps - low) / (high - low + 1e-5), size)
    big = resize_bicubic(maps, size)
    big -= big.amin((1, 2), keepdim=True)
    high = big.amax((1, 2), keepdim=True)
    # A constant map stays constant under bicubic resizing (up to rounding): zeros, as the official.
    flat = (maps.amax((1, 2)) == maps.amin((1, 2)))[:, None, None] | (high == 0)
    return big.div_(torch.where(flat, 1.0, high)).masked_fill_(flat, 0.0)
