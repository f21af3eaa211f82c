"""The one backbone path: a timm VisionTransformer without classifier, by timm name or satlib's conv stem.

Every satlib model (SAT, CAM, TS-CAM) adopts the modules of one of these. `deit_small_patch16_224`,
`vit_small_patch14_reg4_dinov2`, ... are built by timm (`timm.create_model`); `tiny_convstem` is timm's
VisionTransformer with `ConvStem` as its patch embedding. Either way the backbone starts from the
official SAT's initialisation: timm's (trunc_normal(.02) position embedding and Linears, zero biases,
LayerNorm 1/0, PyTorch's default for convs), but for the prefix tokens, which timm draws from
N(0, 1e-6) and the official SAT from trunc_normal(.02).
"""

from __future__ import annotations

from typing import Any

import timm
from timm.layers import Attention, trunc_normal_
from timm.models import is_model_in_modules, model_entrypoint
from timm.models.vision_transformer import Block as TimmBlock
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from satlib.models.blocks import ConvStem

CONVSTEM_BACKBONE = "tiny_convstem"  # the one backbone timm does not name: the conv-stem SAT's
VIT_MODULES = ("vision_transformer", "deit", "vision_transformer_hybrid")  # timm modules of VisionTransformers
NO_CLASSIFIER = dict(num_classes=0, global_pool="", fc_norm=False)  # the final norm stays over the tokens

# The named SAT variants, `sat_<backbone>`: their backbones' arguments (defaults of `create_backbone`)
VARIANTS: dict[str, dict[str, Any]] = {
    "sat_deit_tiny_patch16_224": dict(patch_size=16, embed_dim=192, depth=12, num_heads=3),
    "sat_deit_small_patch16_224": dict(patch_size=16, embed_dim=384, depth=12, num_heads=6),
    "sat_deit_base_patch16_224": dict(patch_size=16, embed_dim=768, depth=12, num_heads=12),
    # from-scratch CPU model (the demo's): conv stem to stride-8 tokens, 12×12 grid at 96 px; sized so
    # that 16 epochs of the synthetic set train in about 4 minutes on 2 cores
    "sat_tiny_convstem": dict(img_size=96, stem_widths=(24, 48, 96), embed_dim=96, depth=4, num_heads=4,
                              mlp_ratio=2.0),
}


def check_vit_name(name: str, model_name: str) -> None:
    """Raise a ValueError naming the model if timm knows its backbone `name` but not as a VisionTransformer."""
    if name == CONVSTEM_BACKBONE or not timm.is_model(name) or is_model_in_modules(name, VIT_MODULES):
        return
    raise ValueError(f"{model_name}: timm builds {name} in {model_entrypoint(name).__module__}, not as a "
                     f"VisionTransformer; SAT runs on timm's VisionTransformer family (DeiT, DeiT-III, DINOv2, "
                     f"CLIP and EVA ViTs)")


def convstem_vit(*, stem_widths: tuple[int, ...], **kwargs: Any) -> VisionTransformer:
    """timm's VisionTransformer (no classifier) whose patch embedding is `ConvStem(stem_widths)`; kwargs go to
    VisionTransformer (img_size, embed_dim, depth, num_heads, mlp_ratio, ...)."""
    def embed(*, img_size, in_chans, embed_dim, **_) -> ConvStem:  # timm also passes patch_size, bias, ...
        return ConvStem(img_size, in_chans, embed_dim, tuple(stem_widths))

    return VisionTransformer(patch_size=2 ** len(stem_widths), embed_layer=embed, **{**kwargs, **NO_CLASSIFIER})


def create_backbone(name: str, **kwargs: Any) -> VisionTransformer:
    """A backbone without classifier, `tiny_convstem` or a timm ViT name, with the official SAT's init.

    kwargs override the named variant's arguments (`VARIANTS["sat_<name>"]`, where there is one) and go to
    timm's VisionTransformer (img_size, depth, drop_path_rate, ...; `stem_widths` for the conv stem); an
    argument it does not take raises a ValueError naming the backbone.
    """
    kwargs = {**VARIANTS.get(f"sat_{name}", {}), **kwargs}
    try:
        if name == CONVSTEM_BACKBONE:
            backbone = convstem_vit(**kwargs)
        else:
            backbone = timm.create_model(name, pretrained=False, **{**kwargs, **NO_CLASSIFIER})
    except (TypeError, AssertionError) as error:  # an argument timm does not take, or an option it refuses
        raise ValueError(f"{name}: timm cannot build it as a backbone with {sorted(kwargs)}: {error}") from error
    check_backbone(backbone, name)
    for token in (backbone.cls_token, backbone.reg_token):
        if token is not None:
            trunc_normal_(token, std=0.02)
    return backbone


def check_backbone(backbone: nn.Module, name: str) -> VisionTransformer:
    """Raise a ValueError naming the backbone unless SAT can run on it (timm's plain VisionTransformer)."""
    if type(backbone) is not VisionTransformer:
        raise ValueError(f"{name}: timm builds it as {type(backbone).__name__}, not as a VisionTransformer; SAT "
                         f"runs on timm's VisionTransformer family (DeiT, DeiT-III, DINOv2, CLIP and EVA ViTs)")
    if backbone.dynamic_img_size or not isinstance(backbone.patch_drop, nn.Identity):
        raise ValueError(f"{name}: dynamic image sizes and patch dropout change the patch grid per image; "
                         f"create the backbone with dynamic_img_size=False and patch_drop_rate=0")
    unsupported = {type(b).__name__ for b in backbone.blocks if type(b) is not TimmBlock}
    unsupported |= {type(b.attn).__name__ for b in backbone.blocks if type(b.attn) is not Attention}
    if unsupported:
        raise ValueError(f"{name}: blocks or attention of type {sorted(unsupported)}; SAT runs on timm's "
                         f"pre-norm Block with its standard Attention")
    return backbone
