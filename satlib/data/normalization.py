"""The mean and std images are normalised with: the model's backbone's own, read from timm by name.

ImageNet's for DeiT, DeiT-III, DINOv2 and satlib's conv stem; OpenAI CLIP's for CLIP backbones, and so on.
Images must be normalised as the backbone was pretrained for its weights (above all a frozen backbone) to
see what they were trained on. Only timm is consulted (never satlib.models): a model name is
`<method>_<backbone>[.<tag>]` with method sat, cam or tscam.
"""

from __future__ import annotations

import timm
from timm.models import resolve_pretrained_cfg

from satlib.data.transforms import IMAGENET, Normalization

METHOD_PREFIXES = ("sat_", "cam_", "tscam_")


def model_normalization(name: str) -> Normalization:
    """(mean, std) for the images of model `name` (e.g. "sat_vit_base_patch16_clip_224"); ImageNet's by default."""
    variant, _, tag = name.partition(".")
    backbone = next((variant.removeprefix(p) for p in METHOD_PREFIXES if variant.startswith(p)), variant)
    if not timm.is_model(backbone):
        return IMAGENET
    cfg = resolve_pretrained_cfg(backbone, pretrained_cfg=tag or None).to_dict()
    return tuple(cfg.get("mean", IMAGENET[0])), tuple(cfg.get("std", IMAGENET[1]))
