"""Named SAT variants: one dict of arguments each, timm registration, pretrained cfgs, `create_model`.

Adding a SAT variant of another timm ViT backbone is one entry in `VARIANTS`, one pretrained cfg naming
the backbone weights in `default_cfgs`, and one `@register_model` function.
"""

from __future__ import annotations

import inspect
import os
from typing import Any

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import generate_default_cfgs, register_model, resolve_pretrained_cfg

from satlib.models.sat import SAT
from satlib.models.weights import load_pretrained, pretrained_file

VARIANTS: dict[str, dict[str, Any]] = {
    "sat_deit_tiny_patch16_224": dict(patch_size=16, embed_dim=192, depth=12, num_heads=3),
    "sat_deit_small_patch16_224": dict(patch_size=16, embed_dim=384, depth=12, num_heads=6),
    "sat_deit_base_patch16_224": dict(patch_size=16, embed_dim=768, depth=12, num_heads=12),
    # from-scratch CPU model (the demo's): conv stem to stride-8 tokens, 12×12 grid at 96 px; sized so
    # that 16 epochs of the synthetic set train in about 4 minutes on 2 cores
    "sat_tiny_convstem": dict(img_size=96, stem_widths=(24, 48, 96), embed_dim=96, depth=4, num_heads=4,
                              mlp_ratio=2.0),
}


def _cfg(url: str = "", **kwargs: Any) -> dict[str, Any]:
    return {
        "url": url, "num_classes": 1000, "input_size": (3, 224, 224), "pool_size": None,
        "crop_pct": 0.875, "interpolation": "bicubic", "fixed_input_size": True,
        "mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD,
        "first_conv": "patch_embed.proj", "classifier": "head", "license": "apache-2.0",
        "origin_url": "https://github.com/wpy1999/SAT", **kwargs,
    }


# Pretrained weights of the SAT variants are their ImageNet backbones; the loc token and head start fresh.
default_cfgs = generate_default_cfgs({
    "sat_deit_tiny_patch16_224.fb_in1k": _cfg(
        hf_hub_id="timm/deit_tiny_patch16_224.fb_in1k",
        url="https://dl.fbaipublicfiles.com/deit/deit_tiny_patch16_224-a1311bcf.pth"),
    "sat_deit_small_patch16_224.fb_in1k": _cfg(
        hf_hub_id="timm/deit_small_patch16_224.fb_in1k",
        url="https://dl.fbaipublicfiles.com/deit/deit_small_patch16_224-cd65a155.pth"),
    "sat_deit_base_patch16_224.fb_in1k": _cfg(
        hf_hub_id="timm/deit_base_patch16_224.fb_in1k",
        url="https://dl.fbaipublicfiles.com/deit/deit_base_patch16_224-b5f2ef4d.pth"),
    "sat_tiny_convstem": _cfg(input_size=(3, 96, 96), crop_pct=1.0, first_conv="patch_embed.stem.0.0"),
})

_SAT_ARGS = set(inspect.signature(SAT).parameters)


def _create_sat(variant: str, pretrained: bool | str | os.PathLike = False, *, pretrained_cfg: Any = None,
                pretrained_cfg_overlay: dict | None = None, cache_dir: str | os.PathLike | None = None,
                **kwargs: Any) -> SAT:
    unknown = sorted(set(kwargs) - _SAT_ARGS)
    if unknown:
        raise ValueError(f"{variant}: unknown argument(s) {unknown}; SAT takes {sorted(_SAT_ARGS)}")
    cfg = resolve_pretrained_cfg(variant, pretrained_cfg, pretrained_cfg_overlay).to_dict()
    model = SAT(**{**VARIANTS[variant], **kwargs})
    model.pretrained_cfg = model.default_cfg = cfg
    if pretrained is True:
        pretrained = pretrained_file(variant, cfg, cache_dir)
    if pretrained:
        load_pretrained(model, pretrained)
    return model


def create_model(name: str, num_classes: int = 1000, pretrained: bool | str | os.PathLike = False,
                 **kwargs: Any) -> SAT:
    """A SAT variant by name; `pretrained` is False, True (download/cache) or a local weights file.

    kwargs override the variant's arguments (img_size, embed_dim, depth, num_heads, stem_widths,
    num_query_blocks, drop_rate, drop_path_rate, attn_impl, ...); as in timm, None values are ignored.
    """
    kwargs = {key: value for key, value in kwargs.items() if value is not None}
    variant, _, tag = name.partition(".")
    if variant not in VARIANTS:
        raise ValueError(f"unknown model {name!r}; satlib models: {list_models()}")
    return _create_sat(variant, pretrained, pretrained_cfg=tag or None, num_classes=num_classes, **kwargs)


def list_models() -> list[str]:
    """Names `create_model` (and, after `import satlib`, `timm.create_model`) accepts."""
    return list(VARIANTS)


@register_model
def sat_deit_tiny_patch16_224(pretrained: bool = False, **kwargs: Any) -> SAT:
    return _create_sat("sat_deit_tiny_patch16_224", pretrained, **kwargs)


@register_model
def sat_deit_small_patch16_224(pretrained: bool = False, **kwargs: Any) -> SAT:
    return _create_sat("sat_deit_small_patch16_224", pretrained, **kwargs)


@register_model
def sat_deit_base_patch16_224(pretrained: bool = False, **kwargs: Any) -> SAT:
    return _create_sat("sat_deit_base_patch16_224", pretrained, **kwargs)


@register_model
def sat_tiny_convstem(pretrained: bool = False, **kwargs: Any) -> SAT:
    return _create_sat("sat_tiny_convstem", pretrained, **kwargs)
