"""The official SAT's fixed Gaussian kernel, shared by the loss (it smooths the map) and the weight
loader (an official checkpoint stores it as a parameter, checked and dropped on load).

A module of its own so that neither `satlib.losses` nor `satlib.models` imports the other.
"""

from __future__ import annotations

import torch
from torch import Tensor


def gaussian_kernel(size: int = 3, nsig: float = 6.0) -> Tensor:
    """The official fixed smoothing kernel (get_kernel(kernlen, nsig)), float32 (size, size) summing to 1.

    Normal probability mass of `size` equal bins spanning ±(nsig + half a bin); the 2-D kernel is the
    square root of the outer product, normalized.
    """
    interval = (2 * nsig + 1.0) / size
    edges = torch.linspace(-nsig - interval / 2, nsig + interval / 2, size + 1, dtype=torch.float64)
    mass = torch.diff(torch.special.ndtr(edges))
    kernel = torch.sqrt(torch.outer(mass, mass))
    return (kernel / kernel.sum()).float()
