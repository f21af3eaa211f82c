"""Image and box geometry: the official train/test pipelines and the exact test-box formulas.

Two test protocols, both documented here because they move boxes differently:

* ``"sat"`` (the official SAT code, ``DataLoader/CUB_200_2011.py`` and ``ILSVRC.py``): the image goes
  through ``Resize((R, R))`` then ``CenterCrop(crop)``; each test box is mapped with
  :func:`resize_crop_boxes`, i.e. ``x0 = int(max(x0 / w * R - s, 0))``,
  ``x1 = int(min(x1 / w * R - s, crop - 1))`` (y likewise with h), ``s = (R - crop) // 2``,
  computed in float64 as the CUB loader does (the ILSVRC loader used float32: pass
  ``dtype=torch.float32`` to reproduce it bit for bit). When ``R - crop`` is odd, torchvision's
  centre crop starts at ``round((R - crop) / 2)`` while the official boxes shift by the floor: we keep
  that half-pixel disagreement because the official numbers were computed with it.
* ``"wsoleval"`` (clovaai/wsolevaluation ``data_loaders.py`` + ``evaluation.resize_bbox``): the image
  is resized to ``crop x crop`` with no centre crop; each box is mapped with
  :func:`resize_boxes_wsoleval`, i.e. ``int(x0 * crop / w)`` (no clipping).

Training is the same for both: ``Resize((R, R)) -> RandomCrop(crop) -> RandomHorizontalFlip``, boxes
and masks following through ``tv_tensors``. Images are normalised with the ImageNet mean and std.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PROTOCOLS = ("sat", "wsoleval")


def _as_boxes(boxes_xyxy, dtype: torch.dtype) -> torch.Tensor:
    """Any (..., 4) array-like -> tensor of `dtype`, with a clear error on a wrong last axis."""
    if not torch.is_tensor(boxes_xyxy):
        boxes_xyxy = torch.tensor(np.asarray(boxes_xyxy, dtype=np.float64))
    boxes = boxes_xyxy.to(dtype)
    if boxes.ndim == 0 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must have shape (..., 4) in x0y0x1y1, got {tuple(boxes.shape)}")
    return boxes


def resize_crop_boxes(boxes_xyxy, image_wh: tuple[float, float], resize_size: int, crop_size: int,
                      *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Official SAT test boxes: (..., 4) xyxy in the w x h original -> (..., 4) in the crop, float32.

    Integer-valued (Python ``int()`` truncation, as the official loaders), computed in `dtype`
    in the official order of operations ``x / w * R - s``.
    """
    w, h = image_wh
    boxes = _as_boxes(boxes_xyxy, dtype)
    shift = (resize_size - crop_size) // 2
    x0, y0, x1, y1 = boxes.unbind(-1)
    # Python scalars keep the arithmetic in `dtype`, exactly like the float64 / float32 originals.
    scale_x = torch.tensor(w, dtype=dtype)
    scale_y = torch.tensor(h, dtype=dtype)
    x0 = torch.clamp(x0 / scale_x * resize_size - shift, min=0)
    y0 = torch.clamp(y0 / scale_y * resize_size - shift, min=0)
    x1 = torch.clamp(x1 / scale_x * resize_size - shift, max=crop_size - 1)
    y1 = torch.clamp(y1 / scale_y * resize_size - shift, max=crop_size - 1)
    return torch.stack([x0, y0, x1, y1], dim=-1).trunc().to(torch.float32)


def resize_boxes_wsoleval(boxes_xyxy, image_wh: tuple[float, float], crop_size: int) -> torch.Tensor:
    """wsolevaluation test boxes: (..., 4) xyxy in the w x h original -> (..., 4) in crop x crop, float32.

    ``int(x * crop / w)`` in float64, as ``evaluation.resize_bbox``; no clipping.
    """
    w, h = image_wh
    boxes = _as_boxes(boxes_xyxy, torch.float64)
    size = torch.tensor([w, h, w, h], dtype=torch.float64)
    return (boxes * crop_size / size).trunc().to(torch.float32)


Normalization = tuple[Sequence[float], Sequence[float]]  # (mean, std) per RGB channel
IMAGENET = (IMAGENET_MEAN, IMAGENET_STD)


def _to_float_normalized(normalization: Normalization) -> list[v2.Transform]:
    mean, std = normalization
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]


def train_transform(img_size: int, resize_size: int, hflip: bool = True, *,
                    normalization: Normalization = IMAGENET) -> v2.Compose:
    """Official training pipeline: Resize((R, R)) -> RandomCrop(crop) -> RandomHorizontalFlip -> normalise."""
    flip = [v2.RandomHorizontalFlip()] if hflip else []
    return v2.Compose([v2.Resize((resize_size, resize_size), antialias=True),
                       v2.RandomCrop(img_size), *flip, *_to_float_normalized(normalization)])


def test_transform(img_size: int, resize_size: int, protocol: str = "sat", *,
                   normalization: Normalization = IMAGENET) -> v2.Compose:
    """Test pipeline: "sat" Resize((R, R)) -> CenterCrop(crop); "wsoleval" Resize((crop, crop))."""
    check_protocol(protocol)
    if protocol == "sat":
        geometry = [v2.Resize((resize_size, resize_size), antialias=True), v2.CenterCrop(img_size)]
    else:
        geometry = [v2.Resize((img_size, img_size), antialias=True)]
    return v2.Compose([*geometry, *_to_float_normalized(normalization)])


def resized_transform(resize_size: int, *, normalization: Normalization = IMAGENET) -> v2.Compose:
    """The R x R resized, normalised image before the centre crop (the ten-crop input)."""
    return v2.Compose([v2.Resize((resize_size, resize_size), antialias=True),
                       *_to_float_normalized(normalization)])


def test_boxes(boxes_xyxy, image_wh: tuple[float, float], img_size: int, resize_size: int,
               protocol: str = "sat") -> torch.Tensor:
    """Test-split boxes (K, 4) by the protocol's exact formula (see the module docstring)."""
    check_protocol(protocol)
    if protocol == "sat":
        return visible_boxes(resize_crop_boxes(boxes_xyxy, image_wh, resize_size, img_size))
    return resize_boxes_wsoleval(boxes_xyxy, image_wh, img_size)


def visible_boxes(boxes: torch.Tensor) -> torch.Tensor:
    """Drop boxes the centre crop cut away entirely (x1 < x0 or y1 < y0 after the official formula).

    The official evaluator keeps them, but their +1 IoU with any box is 0, so dropping them changes
    no image's best IoU; an image left with no box is scored as a miss by the evaluator, as before.
    """
    return boxes[(boxes[:, 2] >= boxes[:, 0]) & (boxes[:, 3] >= boxes[:, 1])]


def check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")


def denormalize(images: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN,
                std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """Undo the normalisation, (B, 3, H, W) or (3, H, W) -> same shape in [0, 1]."""
    shape = (3, 1, 1)
    mean_t = torch.tensor(mean, dtype=images.dtype, device=images.device).view(shape)
    std_t = torch.tensor(std, dtype=images.dtype, device=images.device).view(shape)
    return (images * std_t + mean_t).clamp(0, 1)
