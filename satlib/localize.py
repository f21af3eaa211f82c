"""One call from a model and a batch of images to maps, boxes and classes, for SAT and its baselines alike.

    found = satlib.localize(model, images)   # images (B, 3, H, W): uint8, or normalized as in training
    found.maps     (B, H, W) in [0, 1], at the images' own resolution
    found.boxes    (B, 4) xyxy in the images' pixels
    found.labels   (B,) predicted classes, found.scores (B,) their softmax probabilities

The map is the model's `loc_map`: the loc token's map for SAT, the predicted class's map for the CAM
and TS-CAM baselines. Images of another size than the model's input are resized to it whole (no crop,
antialiased) and the maps and boxes come back at the images' size. uint8 images are normalized as
the model's training images were (`input_normalization`: the backbone's mean and std, ImageNet's for
DeiT and the conv stem, OpenAI's for CLIP). The box follows the protocol's rule
(`satlib.evaluation.boxes`; SAT's: min-max normalise, bilinear resize, largest 8-connected region above
the threshold); the threshold is the model's `best_threshold` (a model rebuilt from a satlib checkpoint
carries the one chosen at evaluation), else `default_threshold(protocol)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from satlib.evaluation import boxes_from_maps, default_thresholds, normalize_maps

if TYPE_CHECKING:
    from satlib.data.transforms import Normalization


@dataclass
class Localization:
    """What `localize` finds in B images of H×W pixels."""

    maps: Tensor  # (B, H, W) float32 in [0, 1]: the map, min-max normalised and resized to the image
    boxes: Tensor  # (B, 4) int64 xyxy in the image's pixels
    labels: Tensor  # (B,) predicted class indices
    scores: Tensor  # (B,) softmax probability of the predicted class
    threshold: float  # the map threshold the boxes were cut at


def default_threshold(protocol: str) -> float:
    """The middle of the protocol's threshold sweep: SAT's 0.4 (of 0.3..0.45), wsolevaluation's 0.5."""
    sweep = default_thresholds(protocol)
    return float(sweep[len(sweep) // 2])


def input_normalization(model: nn.Module) -> Normalization:
    """(mean, std) the model's images are normalised with: the run's (`model.input_normalization`, set for a
    model rebuilt from a checkpoint), else its backbone's pretrained cfg, else ImageNet's."""
    from satlib.data.transforms import IMAGENET

    given = getattr(model, "input_normalization", None)
    if given is not None:
        return given
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return tuple(cfg.get("mean", IMAGENET[0])), tuple(cfg.get("std", IMAGENET[1]))


def model_input(images: Tensor, img_size: tuple[int, int],
                normalization: Normalization | None = None) -> Tensor:
    """Images as the model takes them, (B, 3, H, W) uint8 or float -> (B, 3, *img_size) float, normalized
    (uint8 images only; float images are taken as already normalised) with `normalization` (default ImageNet's)."""
    from torchvision.transforms.v2 import functional as TF

    from satlib.data.transforms import IMAGENET

    mean, std = normalization or IMAGENET

    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got shape {tuple(images.shape)}")
    if tuple(images.shape[-2:]) != tuple(img_size):
        images = TF.resize(images, list(img_size), antialias=True)
    if images.dtype == torch.uint8:
        images = TF.normalize(TF.to_dtype(images, torch.float32, scale=True), list(mean), list(std))
    return images


@torch.no_grad()
def localize(model: nn.Module, images: Tensor, threshold: float | None = None, *,
             protocol: str | None = None) -> Localization:
    """Maps (B, H, W) in [0, 1], boxes (B, 4) xyxy, predicted labels and scores of images (B, 3, H, W).

    `threshold` defaults to the model's `best_threshold`, else the protocol's default; `protocol` to the
    model's `eval_protocol`, else "sat". The model runs in eval mode on its own device; the result is
    on that device.
    """
    protocol = protocol or getattr(model, "eval_protocol", None) or "sat"
    if threshold is None:
        threshold = getattr(model, "best_threshold", None)
    if threshold is None:
        threshold = default_threshold(protocol)
    device = next(model.parameters()).device
    height, width = images.shape[-2:]
    was_training = model.training
    model.eval()
    try:
        out = model(model_input(images.to(device), model.img_size, input_normalization(model)))
    finally:
        model.train(was_training)
    loc_map = out.loc_map.float()
    probs = out.logits.float().softmax(dim=-1)
    scores, labels = probs.max(dim=-1)
    boxes = boxes_from_maps(loc_map, [threshold], (height, width), protocol=protocol)[:, 0]
    return Localization(maps=normalize_maps(loc_map, (height, width), protocol), boxes=boxes, labels=labels,
                        scores=scores, threshold=float(threshold))
