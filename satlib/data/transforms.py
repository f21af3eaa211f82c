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
(when asked for) and masks following through ``tv_tensors``. Images are normalised with the model's mean
and std (ImageNet's by default).

The pipelines are written for a batch (`resize_each`, `crop_and_flip`, `normalized`): images of one size
are resized in one call, then the crops, flips and the normalisation run once for the whole batch, on
the CPU in a loader worker or on the GPU after a batched nvJPEG decode (`satlib.data.loader`). Each step
gives the bits torchvision's v2 transforms give one image.
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


def resize_each(images: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """(3, h_i, w_i) uint8 images on one device -> (B, 3, *size) uint8, antialiased bilinear (v2.Resize's).

    The images of one size are resized in one call (a photo set has few distinct sizes), so a batch on
    a GPU costs a few kernels, not a few per image; each image comes out as alone.
    """
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, image in enumerate(images):
        groups.setdefault(tuple(image.shape), []).append(i)
    resized: list[torch.Tensor | None] = [None] * len(images)
    for members in groups.values():
        together = images[members[0]][None] if len(members) == 1 else torch.stack([images[i] for i in members])
        for i, image in zip(members, v2.functional.resize(together, list(size), antialias=True)):
            resized[i] = image
    return torch.stack(resized)


def draw_crop(resize_size: int, img_size: int, hflip: bool) -> tuple[int, int, bool]:
    """(top, left, flip) of one training image's random crop and flip, drawn from torch's CPU generator as
    v2.RandomCrop and v2.RandomHorizontalFlip draw them (same order, no draw for a crop of the full side)."""
    room = resize_size - img_size + 1
    top = int(torch.randint(0, room, size=())) if room > 1 else 0
    left = int(torch.randint(0, room, size=())) if room > 1 else 0
    flip = hflip and bool(torch.rand(1) < 0.5)
    return top, left, flip


def crop_and_flip(images: torch.Tensor, crops: Sequence[tuple[int, int, bool]], img_size: int) -> torch.Tensor:
    """(B, C, R, R) -> (B, C, img_size, img_size): image b's crop at crops[b] = (top, left, flip)."""
    cut = [image[:, top:top + img_size, left:left + img_size] for image, (top, left, _) in zip(images, crops)]
    return torch.stack([piece.flip(-1) if flip else piece for piece, (_, _, flip) in zip(cut, crops)])


def centre_offset(resize_size: int, img_size: int) -> int:
    """Where v2.CenterCrop(img_size) starts in a resize_size side: round((R - crop) / 2)."""
    return int(round((resize_size - img_size) / 2.0))


def normalized(images: torch.Tensor, normalization: Normalization, *, out: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 images (..., 3, H, W) -> float32 (x / 255 - mean) / std, the same bits as v2.ToDtype(scale=True)
    + v2.Normalize; into `out` (e.g. shared memory) when given. mean/std go to the device once per call's
    device (`_channel_stats`), with no copy from pageable memory after the first."""
    mean, std = _channel_stats(normalization, images.device)
    out = torch.empty(images.shape, dtype=torch.float32, device=images.device) if out is None else out
    return out.copy_(images).mul_(1.0 / 255).sub_(mean).div_(std)


_STATS: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def _channel_stats(normalization: Normalization, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) as (3, 1, 1) float32 tensors on `device`, made once per normalisation and device."""
    mean, std = normalization
    key = (tuple(mean), tuple(std), str(device))
    if key not in _STATS:
        _STATS[key] = tuple(torch.tensor(list(v), dtype=torch.float32).view(3, 1, 1).to(device) for v in (mean, std))
    return _STATS[key]


def train_geometry(value, resize_size: int, img_size: int, crop: tuple[int, int, bool]):
    """One image's boxes or mask (a tv_tensor) through the training geometry: Resize((R, R)) -> the crop -> the
    flip, as v2 moves them (boxes scaled, shifted and clamped; masks nearest)."""
    top, left, flip = crop
    value = v2.functional.resize(value, [resize_size, resize_size], antialias=True)
    value = v2.functional.crop(value, top, left, img_size, img_size)
    return v2.functional.horizontal_flip(value) if flip else value


def test_geometry(value, img_size: int, resize_size: int, protocol: str):
    """One test image's mask (a tv_tensor.Mask, nearest) through the protocol's geometry: "sat" Resize((R, R))
    -> CenterCrop(crop), "wsoleval" Resize((crop, crop))."""
    if protocol == "sat":
        return v2.functional.center_crop(v2.functional.resize(value, [resize_size] * 2), [img_size] * 2)
    return v2.functional.resize(value, [img_size] * 2)


test_geometry.__test__ = False  # a transform, not a test for pytest to collect


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
