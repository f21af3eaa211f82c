"""Model names, named variants, timm registration, pretrained cfgs, `create_model`.

Names are `<method>_<backbone>[.<tag>]` (`parse_model_name`):

- method `sat` (`SAT`), `cam` or `tscam` (the baselines, `satlib.models.baselines`);
- backbone `tiny_convstem` (satlib's conv stem on a timm VisionTransformer) or any timm
  VisionTransformer name (`deit_small_patch16_224`, `deit3_small_patch16_224`,
  `vit_small_patch14_reg4_dinov2`, `vit_base_patch16_clip_224`, ...);
- a `.tag` picks the backbone's pretrained cfg (`sat_vit_base_patch16_clip_224.openai`).

`sat_deit_{tiny,small,base}_patch16_224` (the official SAT: SAT on timm's DeiT) and `sat_tiny_convstem`
are the named variants (`satlib.models.backbones.VARIANTS`, whose backbones their cam_ and tscam_
baselines share), registered with timm (`timm.create_model("sat_tiny_convstem")` after `import satlib`).
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import timm
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import generate_default_cfgs, register_model, resolve_pretrained_cfg

from satlib.models.backbones import CONVSTEM_BACKBONE, VARIANTS, check_vit_name, create_backbone
from satlib.models.baselines import CAM, TSCAM
from satlib.models.sat import SAT, ConvHeadViT
from satlib.models.weights import load_pretrained, pretrained_file

METHODS: dict[str, type[ConvHeadViT]] = {"sat": SAT, "cam": CAM, "tscam": TSCAM}


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


class ModelName(NamedTuple):
    """A model name, `<method>_<backbone>[.<tag>]`, in its parts; `str()` spells it back."""

    method: str  # "sat", "cam" or "tscam"
    backbone: str  # "tiny_convstem" or a timm VisionTransformer name
    tag: str = ""  # the backbone's pretrained tag ("" for its default)

    def __str__(self) -> str:
        return f"{self.method}_{self.backbone}" + (f".{self.tag}" if self.tag else "")


def parse_model_name(name: str) -> ModelName:
    """`<method>_<backbone>[.<tag>]` in its parts; a ValueError naming `name` for an unknown method or backbone."""
    variant, _, tag = name.partition(".")
    method, _, backbone = variant.partition("_")
    if method not in METHODS or not (backbone == CONVSTEM_BACKBONE or timm.is_model(backbone)):
        raise ValueError(f"unknown model {name!r}; satlib models: {list_models()}, or sat_/cam_/tscam_ followed "
                         f"by a timm VisionTransformer name (e.g. sat_vit_small_patch14_reg4_dinov2)")
    check_vit_name(backbone, name)
    return ModelName(method, backbone, tag)


def baseline_name(name: str, method: str) -> str:
    """The model of `method` on the same backbone and tag: ("sat_tiny_convstem", "cam") -> "cam_tiny_convstem"."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r} for a baseline of {name!r}; expected one of {list(METHODS)}")
    return str(parse_model_name(name)._replace(method=method))


def _resolve_cfg(model: ModelName, pretrained_cfg: Any = None,
                 pretrained_cfg_overlay: dict | None = None) -> dict[str, Any]:
    """The pretrained cfg of a named backbone: satlib's for a `VARIANTS` backbone, else timm's of the backbone."""
    variant = f"sat_{model.backbone}"
    source = variant if variant in VARIANTS else model.backbone
    return resolve_pretrained_cfg(source, pretrained_cfg=pretrained_cfg or model.tag or None,
                                  pretrained_cfg_overlay=pretrained_cfg_overlay).to_dict()


def model_pretrained_cfg(name: str) -> dict[str, Any]:
    """The pretrained cfg (mean, std, input_size, crop_pct, weights' hf_hub_id/url...) of a model name,
    without building the model: its backbone's, satlib's own for the `VARIANTS` backbones."""
    return _resolve_cfg(parse_model_name(name))


def _create(model: ModelName, pretrained: bool | str | os.PathLike = False, *, num_classes: int = 1000,
            num_query_blocks: int = 3, attn_impl: str = "sdpa", drop_rate: float = 0.0,
            cache_dir: str | os.PathLike | None = None, freeze_backbone: bool = False,
            train_query_blocks: bool = False, pretrained_cfg: Any = None,
            pretrained_cfg_overlay: dict | None = None, **backbone_args: Any) -> ConvHeadViT:
    """The model `model` names: backbone, method, pretrained cfg, weights (the load is logged), frozen mode.

    `drop_rate` is the official SAT's: dropout after the position embedding, attention projection and
    MLP (timm's `pos_drop_rate` and `proj_drop_rate`).
    """
    if train_query_blocks and not freeze_backbone:
        raise ValueError(f"{model}: train_query_blocks=True only applies with freeze_backbone=True")
    backbone_args.pop("pretrained_model_args", None)  # timm's record of a `local-dir:` config's model_args
    cfg = _resolve_cfg(model, pretrained_cfg, pretrained_cfg_overlay)
    backbone = create_backbone(model.backbone, pos_drop_rate=drop_rate, proj_drop_rate=drop_rate, **backbone_args)
    net = METHODS[model.method](backbone, num_classes=num_classes, num_query_blocks=num_query_blocks,
                                attn_impl=attn_impl, pretrained_cfg=cfg)
    if pretrained is True:
        pretrained = pretrained_file(str(model), cfg, cache_dir)
    if pretrained:
        load_pretrained(net, pretrained)
    if freeze_backbone:
        net.freeze_backbone(train_query_blocks=train_query_blocks)
    return net


def create_model(name: str, num_classes: int = 1000, pretrained: bool | str | os.PathLike = False,
                 **kwargs: Any) -> ConvHeadViT:
    """A model by name (see the module docstring); `pretrained` is False, True (download/cache) or a local file.

    kwargs override the architecture's arguments (img_size, embed_dim, depth, num_heads, stem_widths,
    num_query_blocks, drop_rate, drop_path_rate, attn_impl, ... and any argument of timm's
    VisionTransformer) and set the training mode: `freeze_backbone=True` trains only the loc token,
    loc embedding and head (`train_query_blocks=True`: also the final `num_query_blocks` blocks).
    As in timm, None values are ignored. What a loaded file brought is logged (satlib.models.weights);
    `load_pretrained(model, file)` returns it as a `LoadReport`.
    """
    kwargs = {key: value for key, value in kwargs.items() if value is not None}
    return _create(parse_model_name(name), pretrained, num_classes=num_classes, **kwargs)


def list_models() -> list[str]:
    """The named models: SAT's variants (also `timm.create_model` names after `import satlib`) and the
    CAM and TS-CAM baselines of their backbones. `create_model` also takes sat_/cam_/tscam_ + any timm ViT."""
    backbones = [name.removeprefix("sat_") for name in VARIANTS]
    return list(VARIANTS) + [f"{method}_{backbone}" for method in ("cam", "tscam") for backbone in backbones]


@register_model
def sat_deit_tiny_patch16_224(pretrained: bool = False, **kwargs: Any) -> SAT:
    return _create(ModelName("sat", "deit_tiny_patch16_224"), pretrained, **kwargs)


@register_model
def sat_deit_small_patch16_224(pretrained: bool = False, **kwargs: Any) -> SAT:
    return _create(ModelName("sat", "deit_small_patch16_224"), pretrained, **kwargs)


@register_model
def sat_deit_base_patch16_224(pretrained: bool = False, **kwargs: Any) -> SAT:
    return _create(ModelName("sat", "deit_base_patch16_224"), pretrained, **kwargs)


@register_model
def sat_tiny_convstem(pretrained: bool = False, **kwargs: Any) -> SAT:
    return _create(ModelName("sat", CONVSTEM_BACKBONE), pretrained, **kwargs)
