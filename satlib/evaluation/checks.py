"""Input checks of the evaluation package: protocol, backend, image size, thresholds, maps, GT boxes.

Each returns its input in the form the rest of the package computes with, or raises an error
that says what is wrong and where (``maps[3] contains NaN or inf``, ``gt_boxes[1] row 0: ...``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

PROTOCOLS = ("sat", "wsoleval")
BACKENDS = ("auto", "propagate", "union_find", "host")  # connected components: `satlib.evaluation.extents`
COMPONENT, HOLE = 0, 1  # the kind column of component rows (`satlib.evaluation.components`)


def check_protocol(protocol: str) -> str:
    """The protocol name, if it is one of `PROTOCOLS`."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
    return protocol


def check_backend(backend: str) -> str:
    """The components backend name, if it is one of `BACKENDS`."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
    return backend


def image_hw(image_size: int | Sequence[int]) -> tuple[int, int]:
    """Image size as (H, W) from an int or an (H, W) pair."""
    H, W = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if H < 1 or W < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    return int(H), int(W)


def check_thresholds(thresholds: Sequence[float]) -> Tensor:
    """Thresholds as a float64 (T,) CPU tensor; each must be finite and in [0, 1]."""
    values = torch.as_tensor(thresholds, dtype=torch.float64).reshape(-1)
    if values.numel() == 0:
        raise ValueError("thresholds is empty")
    if not torch.isfinite(values).all() or (values < 0).any() or (values > 1).any():
        raise ValueError(f"thresholds must lie in [0, 1], got {values.tolist()}")
    return values


def check_maps(maps: Tensor) -> Tensor:
    """Localization maps as finite float32 (N, h, w); a clear error otherwise."""
    if not isinstance(maps, Tensor):
        raise TypeError(f"maps must be a torch.Tensor, got {type(maps).__name__}")
    if maps.dim() != 3:
        raise ValueError(f"maps must be (N, h, w), got shape {tuple(maps.shape)}")
    if maps.shape[0] == 0 or maps.shape[1] == 0 or maps.shape[2] == 0:
        raise ValueError(f"maps is empty: shape {tuple(maps.shape)}")
    if not maps.is_floating_point():
        raise TypeError(f"maps must be floating point, got {maps.dtype}")
    bad = ~torch.isfinite(maps)
    if bad.any():
        first = bad.flatten(1).any(1).nonzero()[0, 0].item()
        raise ValueError(f"maps[{first}] contains NaN or inf")
    return maps.float()


def check_gt_boxes(gt_boxes: Sequence[Tensor] | Tensor, image_size: int | Sequence[int],
                   batch: int | None = None) -> list[Tensor]:
    """Validate per-image GT boxes (each (K, 4) xyxy) -> list of float64 tensors, each on its own device.

    Coordinates must be finite, 0 <= x0 <= x1 <= W and 0 <= y0 <= y1 <= H. K = 0 is allowed: an
    image whose every box the centre crop cut away (`satlib.data.transforms.visible_boxes`) is scored
    as a miss at every threshold, as the official IoU with such boxes is 0.
    """
    H, W = image_hw(image_size)
    if isinstance(gt_boxes, Tensor) and gt_boxes.dim() == 2:
        raise ValueError(f"gt_boxes must be per image: a list of (K, 4) tensors or a (B, K, 4) tensor, "
                         f"got shape {tuple(gt_boxes.shape)}")
    boxes = [torch.as_tensor(b) for b in gt_boxes]
    if batch is not None and len(boxes) != batch:
        raise ValueError(f"gt_boxes has {len(boxes)} images but the maps have {batch}")
    for i, b in enumerate(boxes):
        if b.dim() != 2 or b.shape[-1] != 4:
            raise ValueError(f"gt_boxes[{i}] must be (K, 4), got shape {tuple(b.shape)}")
    checked = [b.double() for b in boxes]
    everything = torch.cat([b.cpu() for b in checked])
    x0, y0, x1, y1 = everything.unbind(-1)
    ok = torch.isfinite(everything).all(-1) & (0 <= x0) & (x0 <= x1) & (x1 <= W) & (0 <= y0) & (y0 <= y1) & (y1 <= H)
    if not ok.all():
        first = int((~ok).nonzero()[0, 0])
        image = int(np.searchsorted(np.cumsum([b.shape[0] for b in checked]), first, side="right"))
        row = first - sum(b.shape[0] for b in checked[:image])
        raise ValueError(f"gt_boxes[{image}] row {row}: {everything[first].tolist()} is not a finite box inside "
                         f"the {H}x{W} image (need 0 <= x0 <= x1 <= W, 0 <= y0 <= y1 <= H)")
    return checked
