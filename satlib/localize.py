"""One call from a model and a batch of images to maps, boxes and classes, for SAT and its baselines alike.

    found = satlib.localize(satlib.load("run/best.pt"), images)  # images (B, 3, H, W): uint8, or normalized
    found.maps     (B, H, W) in [0, 1], at the images' own resolution
    found.boxes    (B, 4) xyxy in the images' pixels
    found.labels   (B,) predicted classes, found.scores (B,) their softmax probabilities

The map is the model's `loc_map`: the loc token's map for SAT, the predicted class's map for the CAM
and TS-CAM baselines. Images of another size than the model's input are resized to it whole (no crop,
antialiased) and the maps and boxes come back at the images' size. The box follows the protocol's rule
(`satlib.evaluation.boxes`; SAT's: min-max normalise, bilinear resize, largest 8-connected region above
the threshold).

What the model was trained with comes from its `ModelInfo` (a `LoadedModel` from `satlib.load`, or
`info=`): uint8 images are normalized as its training images were, the threshold is the one chosen at
evaluation and the protocol its run's. A bare `nn.Module` gets the protocol's defaults (SAT's, and
`default_threshold(protocol)`) and its backbone's pretrained normalisation (timm's `pretrained_cfg`:
ImageNet's for DeiT and the conv stem, OpenAI's for CLIP). Explicit `threshold=` and `protocol=` win.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torchvision.transforms.v2 import functional as TF

from satlib.data.transforms import IMAGENET, Normalization
from satlib.evaluation import boxes_from_maps, default_thresholds, normalize_maps
from satlib.info import LoadedModel, ModelInfo


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


def input_normalization(model: nn.Module, info: ModelInfo | None = None) -> Normalization:
    """(mean, std) the model's images are normalised with: its run's (`info`), else its backbone's pretrained cfg
    (timm's declared `pretrained_cfg`), else ImageNet's."""
    if info is not None:
        return info.normalization
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return tuple(cfg.get("mean", IMAGENET[0])), tuple(cfg.get("std", IMAGENET[1]))


def model_input(images: Tensor, img_size: tuple[int, int],
                normalization: Normalization | None = None) -> Tensor:
    """Images as the model takes them, (B, 3, H, W) uint8 or float -> (B, 3, *img_size) float, normalized
    (uint8 images only; float images are taken as already normalised) with `normalization` (default ImageNet's)."""
    mean, std = normalization or IMAGENET

    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got shape {tuple(images.shape)}")
    if tuple(images.shape[-2:]) != tuple(img_size):
        images = TF.resize(images, list(img_size), antialias=True)
    if images.dtype == torch.uint8:
        images = TF.normalize(TF.to_dtype(images, torch.float32, scale=True), list(mean), list(std))
    return images


@torch.no_grad()
def localize(model: LoadedModel | nn.Module, images: Tensor, *, info: ModelInfo | None = None,
             threshold: float | None = None, protocol: str | None = None) -> Localization:
    """Maps (B, H, W) in [0, 1], boxes (B, 4) xyxy, predicted labels and scores of images (B, 3, H, W).

    `model` is a `LoadedModel` (`satlib.load`) or a bare module with `info` (or None: the defaults, see the
    module docstring). `threshold` defaults to the info's, else the protocol's default; `protocol` to the
    info's, else "sat". The model runs in eval mode on its own device; the result is on that device.
    """
    if isinstance(model, LoadedModel):
        model, info = model.model, info or model.info
    protocol = protocol or (info.protocol if info is not None else "sat")
    if threshold is None and info is not None:
        threshold = info.threshold
    if threshold is None:
        threshold = default_threshold(protocol)
    device = next(model.parameters()).device
    height, width = images.shape[-2:]
    img_size = (info.img_size, info.img_size) if info is not None else model.img_size
    was_training = model.training
    model.eval()
    try:
        out = model(model_input(images.to(device), img_size, input_normalization(model, info)))
    finally:
        model.train(was_training)
    loc_map = out.loc_map.float()
    probs = out.logits.float().softmax(dim=-1)
    scores, labels = probs.max(dim=-1)
    boxes = boxes_from_maps(loc_map, [threshold], (height, width), protocol=protocol)[:, 0]
    return Localization(maps=normalize_maps(loc_map, (height, width), protocol), boxes=boxes, labels=labels,
                        scores=scores, threshold=float(threshold))
