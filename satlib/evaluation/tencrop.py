"""Ten-crop test-time classification, as the official SAT evaluator."""

from __future__ import annotations

from collections.abc import Callable

import torch
from einops import rearrange
from torch import Tensor
from torchvision.transforms.v2 import functional as TF


def ten_crop_probs(classify: Callable[[Tensor], Tensor], images: Tensor, crop_size: int = 224) -> Tensor:
    """Mean softmax over ten crops, (B, 3, R, R) resized images -> (B, classes) probabilities.

    The crops are the four corners and the centre, and the same of the horizontally flipped
    image (torchvision's ``TenCrop``), cut on the images' device; `classify` maps a batch of
    (10*B, 3, crop, crop) images to logits. As the official evaluator: softmax per crop, then the
    mean over the ten (the official feeds 256x256 resized, normalised images).
    """
    if images.dim() != 4:
        raise ValueError(f"images must be (B, 3, R, R), got shape {tuple(images.shape)}")
    if min(images.shape[-2:]) < crop_size:
        raise ValueError(f"images {tuple(images.shape[-2:])} are smaller than the {crop_size} crop")
    crops = torch.cat(TF.ten_crop(images, [crop_size, crop_size]))  # (10*B, 3, crop, crop), crop-major
    logits = classify(crops)
    probs = rearrange(logits, "(crops batch) classes -> batch crops classes", crops=10).softmax(-1)
    return probs.mean(1)
