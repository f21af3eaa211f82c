"""Named SAT variants, SAT and its baselines on any timm ViT, timm registration, pretrained cfgs, `create_model`.

Names are `<method>_<backbone>`:

- `sat_deit_{tiny,small,base}_patch16_224` and `sat_tiny_convstem`: the official SAT (`SAT`), one dict
  of arguments each in `VARIANTS`, registered with timm;
- `sat_<timm ViT name>` (e.g. `sat_deit3_small_patch16_224`, `sat_vit_small_patch14_reg4_dinov2`,
  `sat_vit_base_patch16_clip_224`): SAT on that timm VisionTransformer (`ViTSAT`);
- `cam_<backbone>` and `tscam_<backbone>` for every backbone above (`deit_small_patch16_224`,
  `tiny_convstem`, any timm ViT name): the CAM and TS-CAM baselines (`satlib.models.baselines`).

A `.tag` picks the backbone's pretrained cfg (`sat_vit_base_patch16_clip_224.openai`).
"""

from __future__ import annotations

import inspect
import os
from typing import Any, NamedTuple

import timm
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import (
    generate_default_cfgs,
    is_model_in_modules,
    model_entrypoint,
    register_model,
    resolve_pretrained_cfg,
)
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from satlib.models.baselines import ViTCAM, ViTTSCAM
from satlib.models.sat import SAT
from satlib.models.vit import ViTBase, ViTSAT, check_backbone, convstem_vit
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
METHODS = {"sat": ViTSAT, "cam": ViTCAM, "tscam": ViTTSCAM}  # method prefix -> model on a timm backbone
CONVSTEM_BACKBONE = "tiny_convstem"  # the one backbone timm does not name: the conv-stem SAT's
VIT_MODULES = ("vision_transformer", "deit", "vision_transformer_hybrid")  # timm modules of VisionTransformers


def _finish(model: nn.Module, name: str, cfg: dict, pretrained: bool | str | os.PathLike,
            cache_dir: str | os.PathLike | None, freeze_backbone: bool, train_query_blocks: bool) -> nn.Module:
    """Pretrained cfg, weights (`model.load_report` says what was new and what was dropped), frozen mode."""
    if train_query_blocks and not freeze_backbone:
        raise ValueError(f"{name}: train_query_blocks=True only applies with freeze_backbone=True")
    model.pretrained_cfg = model.default_cfg = cfg
    if pretrained is True:
        pretrained = pretrained_file(name, cfg, cache_dir)
    if pretrained:
        model.load_report = load_pretrained(model, pretrained)
    if freeze_backbone:
        model.freeze_backbone(train_query_blocks=train_query_blocks)
    return model


def _create_sat(variant: str, pretrained: bool | str | os.PathLike = False, *, pretrained_cfg: Any = None,
                pretrained_cfg_overlay: dict | None = None, cache_dir: str | os.PathLike | None = None,
                freeze_backbone: bool = False, train_query_blocks: bool = False, **kwargs: Any) -> SAT:
    unknown = sorted(set(kwargs) - _SAT_ARGS)
    if unknown:
        raise ValueError(f"{variant}: unknown argument(s) {unknown}; SAT takes {sorted(_SAT_ARGS)}")
    cfg = resolve_pretrained_cfg(variant, pretrained_cfg, pretrained_cfg_overlay).to_dict()
    model = SAT(**{**VARIANTS[variant], **kwargs})
    return _finish(model, variant, cfg, pretrained, cache_dir, freeze_backbone, train_query_blocks)


def create_backbone(name: str, *, tag: str = "", drop_rate: float = 0.0,
                    **kwargs: Any) -> tuple[VisionTransformer, dict[str, Any]]:
    """A timm VisionTransformer without classifier, and its pretrained cfg: `tiny_convstem` or a timm name.

    `drop_rate` is SAT's: dropout after the position embedding, attention projection and MLP (timm's
    `pos_drop_rate` and `proj_drop_rate`). Other kwargs go to the timm model (img_size, depth, ...).
    The backbone's final norm stays over the tokens (`fc_norm=False`, no pooling).
    """
    kwargs = {"pos_drop_rate": drop_rate, "proj_drop_rate": drop_rate, **kwargs}
    if name == CONVSTEM_BACKBONE:
        args = {**VARIANTS[f"sat_{name}"], **kwargs}
        return convstem_vit(**args), resolve_pretrained_cfg(f"sat_{name}").to_dict()
    if not timm.is_model(name):
        raise ValueError(f"unknown backbone {name!r}: neither {CONVSTEM_BACKBONE!r} nor a timm model name")
    if not is_model_in_modules(name, VIT_MODULES):
        raise ValueError(f"{name}: timm builds it in {model_entrypoint(name).__module__}, not as a VisionTransformer; "
                         f"SAT runs on timm's VisionTransformer family (DeiT, DeiT-III, DINOv2, CLIP and EVA ViTs)")
    cfg = resolve_pretrained_cfg(name, pretrained_cfg=tag or None).to_dict()
    try:
        backbone = timm.create_model(name, pretrained=False, num_classes=0, global_pool="", fc_norm=False, **kwargs)
    except (TypeError, AssertionError) as error:  # an argument timm does not take, or an option it refuses
        raise ValueError(f"{name}: timm cannot build it as a backbone with {sorted(kwargs)}: {error}") from error
    return check_backbone(backbone, name), cfg


def _create_vit(method: str, backbone: str, tag: str = "", pretrained: bool | str | os.PathLike = False, *,
                num_classes: int = 1000, num_query_blocks: int = 3, attn_impl: str = "sdpa",
                cache_dir: str | os.PathLike | None = None, freeze_backbone: bool = False,
                train_query_blocks: bool = False, **backbone_kwargs: Any) -> ViTBase:
    name = f"{method}_{backbone}"
    vit, cfg = create_backbone(backbone, tag=tag, **backbone_kwargs)
    model = METHODS[method](vit, num_classes=num_classes, num_query_blocks=num_query_blocks, attn_impl=attn_impl)
    return _finish(model, name, cfg, pretrained, cache_dir, freeze_backbone, train_query_blocks)


def create_model(name: str, num_classes: int = 1000, pretrained: bool | str | os.PathLike = False,
                 **kwargs: Any) -> nn.Module:
    """A model by name (see the module docstring); `pretrained` is False, True (download/cache) or a local file.

    kwargs override the architecture's arguments (img_size, embed_dim, depth, num_heads, stem_widths,
    num_query_blocks, drop_rate, drop_path_rate, attn_impl, ... and, on timm backbones, any argument
    of timm's VisionTransformer) and set the training mode: `freeze_backbone=True` trains only the loc
    token, loc embedding and head (`train_query_blocks=True`: also the final `num_query_blocks` blocks).
    As in timm, None values are ignored. A loaded file's report is `model.load_report`.
    """
    kwargs = {key: value for key, value in kwargs.items() if value is not None}
    variant, _, tag = name.partition(".")
    if variant in VARIANTS:
        return _create_sat(variant, pretrained, pretrained_cfg=tag or None, num_classes=num_classes, **kwargs)
    method, _, backbone = variant.partition("_")
    if method not in METHODS or not (backbone == CONVSTEM_BACKBONE or timm.is_model(backbone)):
        raise ValueError(f"unknown model {name!r}; satlib models: {list_models()}, or sat_/cam_/tscam_ followed "
                         f"by a timm VisionTransformer name (e.g. sat_vit_small_patch14_reg4_dinov2)")
    return _create_vit(method, backbone, tag, pretrained, num_classes=num_classes, **kwargs)


def list_models() -> list[str]:
    """The named models: SAT's variants (also `timm.create_model` names after `import satlib`) and the
    CAM and TS-CAM baselines of their backbones. `create_model` also takes sat_/cam_/tscam_ + any timm ViT."""
    backbones = [name.removeprefix("sat_") for name in VARIANTS]
    return list(VARIANTS) + [f"{method}_{backbone}" for method in ("cam", "tscam") for backbone in backbones]


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


# ----------------------------------------------------------------------------------------------
# model names as data: `<method>_<backbone>[.tag]`


class ModelName(NamedTuple):
    """A model name as its parts: "sat_deit_small_patch16_224.fb_in1k" -> (sat, deit_small_patch16_224, fb_in1k)."""

    method: str  # "sat", "cam" or "tscam"
    backbone: str  # "tiny_convstem" or a timm ViT name
    tag: str  # the backbone's pretrained cfg tag, "" for its default


def parse_model_name(name: str) -> ModelName:
    """`<method>_<backbone>[.tag]` -> ModelName; a ValueError for a name `create_model` does not know."""
    variant, _, tag = name.partition(".")
    method, _, backbone = variant.partition("_")
    if method not in METHODS or not (variant in VARIANTS or backbone == CONVSTEM_BACKBONE or timm.is_model(backbone)):
        raise ValueError(f"unknown model {name!r}; satlib models: {list_models()}, or sat_/cam_/tscam_ followed "
                         f"by a timm VisionTransformer name (e.g. sat_vit_small_patch14_reg4_dinov2)")
    return ModelName(method, backbone, tag)


def baseline_name(name: str, method: str) -> str:
    """The same backbone under another method: baseline_name("sat_tiny_convstem", "cam") -> "cam_tiny_convstem"."""
    if method not in METHODS:
        raise ValueError(f"method {method!r}: expected one of {sorted(METHODS)}")
    parsed = parse_model_name(name)
    return f"{method}_{parsed.backbone}" + (f".{parsed.tag}" if parsed.tag else "")


def model_pretrained_cfg(name: str) -> dict[str, Any]:
    """The pretrained cfg (mean, std, input_size, ...) `create_model(name)` gives its model, without building it."""
    method, backbone, tag = parse_model_name(name)
    if f"{method}_{backbone}" in VARIANTS:
        return resolve_pretrained_cfg(f"{method}_{backbone}", pretrained_cfg=tag or None).to_dict()
    if backbone == CONVSTEM_BACKBONE:
        return resolve_pretrained_cfg(f"sat_{backbone}").to_dict()
    return resolve_pretrained_cfg(backbone, pretrained_cfg=tag or None).to_dict()
