"""Numba kernels: each protocol's normalisation and resize (wsoleval: and 8-bit quantisation) fused, for
maps on the CPU.

Imported lazily by `satlib.evaluation.thresholds` (numba is slow to import). The arithmetic is
`satlib.evaluation.normalize`'s, operation for operation, so the levels are the same bits: wsoleval
`resize_bicubic` and `normalize_maps` (cv2's own float32 ``INTER_CUBIC``, then ``m -= min; m /= max``)
followed by `threshold_levels`' ``uint8(255 * m)``; SAT min-max normalisation then `resize_bilinear`.
One map at a time, so the float map never leaves the cache; the caller splits maps over its threads,
so the evaluator's CPU work runs on threads of its own and none on torch's OpenMP pool.
"""

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def wsoleval_levels(maps, col_index, col_weight, row_index, row_weight, levels):
    """Raw maps (N, h, w) float32 -> 8-bit levels ``levels`` (N, H, W) uint8, in place.

    Taps from `satlib.evaluation.normalize.cubic_taps`: columns (W, 4), rows (H, 4).
    """
    N, h, w = maps.shape
    H, W = levels.shape[1], levels.shape[2]
    vector = W - W % 4
    cols = np.empty((h, W), dtype=np.float32)
    big = np.empty((H, W), dtype=np.float32)
    f255 = np.float32(255)
    for m in range(N):
        raw = maps[m]
        for y in range(h):
            for x in range(W):
                acc = raw[y, col_index[x, 0]] * col_weight[x, 0]
                acc = acc + raw[y, col_index[x, 1]] * col_weight[x, 1]
                acc = acc + raw[y, col_index[x, 2]] * col_weight[x, 2]
                cols[y, x] = acc + raw[y, col_index[x, 3]] * col_weight[x, 3]
        low = np.float32(np.inf)
        high = np.float32(-np.inf)
        for y in range(H):
            c0, c1, c2, c3 = cols[row_index[y, 0]], cols[row_index[y, 1]], cols[row_index[y, 2]], cols[row_index[y, 3]]
            w0, w1, w2, w3 = row_weight[y, 0], row_weight[y, 1], row_weight[y, 2], row_weight[y, 3]
            out = big[y]
            for x in range(vector):  # cv2's SIMD loop: s0*w0 + (s1*w1 + (s2*w2 + s3*w3))
                out[x] = c0[x] * w0 + (c1[x] * w1 + (c2[x] * w2 + c3[x] * w3))
            for x in range(vector, W):  # its scalar tail: left to right
                out[x] = ((c0[x] * w0 + c1[x] * w1) + c2[x] * w2) + c3[x] * w3
            for x in range(W):
                low = min(low, out[x])
                high = max(high, out[x])
        flat = high - low == 0
        if not flat:
            first = raw[0, 0]
            flat = True
            for y in range(h):
                for x in range(w):
                    flat &= raw[y, x] == first
        if flat:  # a constant map: zeros, as the official
            levels[m] = 0
            continue
        peak = high - low
        for y in range(H):
            out = big[y]
            dst = levels[m, y]
            for x in range(W):
                dst[x] = np.uint8(((out[x] - low) / peak) * f255)
    return levels


@njit(cache=True, nogil=True)
def sat_levels(maps, col_lo, col_hi, col_weight, row_lo, row_hi, row_weight, out):
    """Raw maps (N, h, w) float32 -> SAT's normalised, resized maps ``out`` (N, H, W) float32, in place.

    ``(m - min) / (max - min + 1e-5)`` in float32, then cv2's bilinear resize along columns, then rows,
    each output ``a + (b - a) * w`` with the product and sum in float64 and one rounding to float32, as
    `satlib.evaluation.normalize.resize_bilinear` computes it. Taps from `linear_taps`: lo, hi (n_out,)
    int64, weight (n_out,) float32.
    """
    N, h, w = maps.shape
    H, W = out.shape[1], out.shape[2]
    norm = np.empty((h, w), dtype=np.float32)
    rows = np.empty((h, W), dtype=np.float32)
    eps = np.float32(1e-5)
    for m in range(N):
        raw = maps[m]
        low = raw[0, 0]
        high = raw[0, 0]
        for y in range(h):
            for x in range(w):
                low = min(low, raw[y, x])
                high = max(high, raw[y, x])
        span = (high - low) + eps
        for y in range(h):
            for x in range(w):
                norm[y, x] = (raw[y, x] - low) / span
        for y in range(h):
            for x in range(W):
                a = norm[y, col_lo[x]]
                rows[y, x] = np.float32(np.float64(norm[y, col_hi[x]] - a) * np.float64(col_weight[x]) + np.float64(a))
        for y in range(H):
            top, bottom, weight = rows[row_lo[y]], rows[row_hi[y]], np.float64(row_weight[y])
            dst = out[m, y]
            for x in range(W):
                a = top[x]
                dst[x] = np.float32(np.float64(bottom[x] - a) * weight + np.float64(a))
    return out
