"""Where a localization map's mass sits against the object's GT box: a diagnosis of maps, not a protocol metric.

Each map is min-max normalised and resized to the image as the protocol does (`normalize_maps`), then
read against the union of the image's GT boxes (inclusive xyxy pixels, the evaluator's convention):

- `inside_share`: the share of the map's mass (the sum of its values) inside the boxes;
- `box_share`: the boxes' share of the image, which is the `inside_share` of a map spread evenly, so a
  map that favours the object has inside_share > box_share;
- `inside_mean`, `outside_mean`: the map's mean value inside and outside the boxes (NaN outside when the
  boxes cover the whole image). A map that is high on the background and low on the object (an
  "inverted" map) has inside_mean < outside_mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from einops import rearrange
from torch import Tensor

from satlib.evaluation.normalize import normalize_maps


class BoxMass(NamedTuple):
    """Per image, each (B,): see the module docstring."""

    inside_share: Tensor
    box_share: Tensor
    inside_mean: Tensor
    outside_mean: Tensor


def box_masks(boxes: Sequence[Tensor], size: tuple[int, int], device: torch.device | None = None) -> Tensor:
    """The union of each image's boxes as a pixel mask, B × (k, 4) inclusive xyxy -> (B, H, W) bool."""
    height, width = size
    rows = rearrange(torch.arange(height, device=device), "h -> 1 h 1")
    cols = rearrange(torch.arange(width, device=device), "w -> 1 1 w")
    masks = []
    for image_boxes in boxes:
        x0, y0, x1, y1 = (rearrange(c, "k -> k 1 1") for c in image_boxes.to(device).float().unbind(-1))
        inside = (cols >= x0) & (cols <= x1) & (rows >= y0) & (rows <= y1)  # (k, H, W)
        masks.append(inside.any(0))
    return torch.stack(masks)


def box_mass(maps: Tensor, boxes: Sequence[Tensor], image_size: int | Sequence[int],
             protocol: str = "sat") -> BoxMass:
    """Where each map's mass sits against its GT boxes, (B, rows, cols) maps and B × (k, 4) boxes in pixels
    of the `image_size` input -> `BoxMass` of (B,) tensors."""
    normalized = normalize_maps(maps.float(), image_size, protocol)  # (B, H, W) in [0, 1]
    inside = box_masks(boxes, tuple(normalized.shape[-2:]), normalized.device)
    pixels_in = inside.sum((1, 2)).float()
    pixels_out = (~inside).sum((1, 2)).float()
    mass_in = (normalized * inside).sum((1, 2))
    mass = normalized.sum((1, 2))
    return BoxMass(inside_share=mass_in / mass.clamp_min(1e-12),
                   box_share=pixels_in / (pixels_in + pixels_out),
                   inside_mean=mass_in / pixels_in.clamp_min(1),
                   outside_mean=torch.where(pixels_out > 0, (mass - mass_in) / pixels_out.clamp_min(1),
                                            torch.nan))
