"""Each protocol's map thresholds, and the foreground at a threshold as ``scores > cut``.

SAT sweeps four thresholds and compares the float32 map with float32(t); wsolevaluation sweeps
0.00..0.99 and compares its 8-bit map ``q = uint8(255 * map)`` with ``int(t * q.max())``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from satlib.evaluation.checks import check_protocol, check_thresholds

SAT_THRESHOLDS = (0.3, 0.35, 0.4, 0.45)  # official train.py sweep (evaluator.py then uses the best one)
WSOLEVAL_THRESHOLDS = tuple(float(t) for t in np.arange(0, 1, 0.01))  # cam_curve_interval=0.01


def default_thresholds(protocol: str) -> tuple[float, ...]:
    """Each protocol's own threshold list: SAT's [0.3, 0.35, 0.4, 0.45], wsoleval's 0.00..0.99."""
    return SAT_THRESHOLDS if check_protocol(protocol) == "sat" else WSOLEVAL_THRESHOLDS


def threshold_levels(normalized: Tensor, thresholds: Sequence[float], protocol: str) -> tuple[Tensor, Tensor]:
    """Scores (N, H, W) and cuts (N, T) such that the foreground at threshold t is ``scores > cut``.

    SAT compares the float32 map with float32(t); wsoleval quantises to 8 bits (the scores are the
    uint8 levels) and compares with ``int(t * q.max())`` (a float32 cut, exact). Both on the
    maps' device.
    """
    t = check_thresholds(thresholds).to(normalized.device)
    N = normalized.shape[0]
    if check_protocol(protocol) == "sat":
        return normalized, t.float().expand(N, -1)
    quantized = (normalized * 255).to(torch.uint8)
    peak = quantized.amax((1, 2)).double()
    return quantized, torch.floor(t[None, :] * peak[:, None]).float()
