"""SAT on any timm VisionTransformer: DeiT, DeiT-III, DINOv2 (with or without registers), CLIP and EVA ViTs.

timm builds the backbone (`timm.create_model(name)`) and `ViTBase` adopts its modules under their
own names, so a plain timm checkpoint of that backbone loads as it is (`checkpoint_filter_fn`). The
tokens are

    [prefix tokens (cls, registers)..., patches..., loc]

and the loc token carries its own position embedding. Every block reads one row of its attention
logits by hand: SAT's localization token's (the last), turned into a mask over all keys,
`sigmoid(mean over heads of q_loc · kᵀ · scale)`; the final `num_query_blocks` blocks multiply their
attention by it. The mask's patch grid leaves out every prefix token and the loc token, and follows
the backbone's patch size and `img_size`. Layer scale, qk-norm, the pre-norm (CLIP's `norm_pre`) and
`no_embed_class` position embeddings are the backbone's own modules and flags, used as timm uses them.

As in `satlib.models.blocks`, two attention paths compute the same thing: "explicit" materialises the
logits and the attention (the reference); "sdpa" computes only the row it reads by hand and folds the
mask into the values, `(softmax(S) ⊙ m) · V = softmax(S) · (m ⊙ V)`, leaving the rest to the fused
kernel. The official DeiT and conv-stem SAT (`satlib.models.sat.SAT`) is a separate, unchanged class;
the CAM and TS-CAM baselines (`satlib.models.baselines`) are `ViTBase` without the loc token.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial

import torch
import torch.nn.functional as F
from einops import rearrange, reduce, repeat
from timm.layers import Attention, trunc_normal_
from timm.models.vision_transformer import Block as TimmBlock
from timm.models.vision_transformer import VisionTransformer
from timm.models.vision_transformer import checkpoint_filter_fn as timm_checkpoint_filter_fn
from torch import Tensor, nn

from satlib.models.blocks import ConvStem, TokenMask, check_attn_impl
from satlib.models.freeze import FrozenBackboneMixin
from satlib.models.sat import SATOutput

ROWS = ("loc", "cls", None)  # the attention row a block reads: SAT's loc token, TS-CAM's cls token, none
CLASSIFIER_KEYS = ("head.", "head_dist.", "fc_norm.", "attn_pool.", "pre_logits.", "dist_token")


class ClsAttentionRow(nn.Module):
    """The cls token's logits row to its attention over keys, averaged over heads, (B, heads, N) -> (B, N).

    TS-CAM's reading of a block (softmax over keys, then the mean over heads), in float32. A module so
    a forward hook can read it.
    """

    def forward(self, cls_logits: Tensor) -> Tensor:
        return cls_logits.float().softmax(dim=-1).mean(dim=1)


class ViTAttention(nn.Module):
    """timm's `Attention` under its own names, also returning its read row, (B, N, D) -> (B, N, D), (B, N).

    Args:
        attn: the timm `Attention` whose modules (qkv, q_norm, k_norm, norm, gate, proj, dropouts) are adopted.
        row: "loc" (SAT's mask from the last token's logits), "cls" (TS-CAM's attention of token 0) or None.
        apply_mask: multiply the attention by the loc token's mask over keys (SAT's query blocks).
        attn_impl: "sdpa" (fused kernel, the read row by hand) or "explicit" (materialised attention).
    """

    def __init__(self, attn: Attention, *, row: str | None = None, apply_mask: bool = False,
                 attn_impl: str = "sdpa") -> None:
        super().__init__()
        if type(attn) is not Attention:
            raise ValueError(f"SAT supports timm's Attention, got {type(attn).__name__}")
        if row not in ROWS or (apply_mask and row != "loc"):
            raise ValueError(f"row={row!r}, apply_mask={apply_mask}: expected a row in {ROWS}; only the loc "
                             f"token's row is a mask")
        self.num_heads, self.head_dim, self.scale = attn.num_heads, attn.head_dim, attn.scale
        self.row, self.apply_mask, self.attn_impl = row, apply_mask, check_attn_impl(attn_impl)
        self.qkv, self.q_norm, self.k_norm = attn.qkv, attn.q_norm, attn.k_norm
        self.attn_drop, self.norm, self.gate = attn.attn_drop, attn.norm, getattr(attn, "gate", None)
        self.proj, self.proj_drop = attn.proj, attn.proj_drop
        self.read = TokenMask() if row == "loc" else ClsAttentionRow() if row == "cls" else None
        self.attend = nn.Softmax(dim=-1)

    def split_heads(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Queries, keys (qk-normed as the backbone does) and values, (B, N, D) -> 3 × (B, heads, N, d)."""
        q, k, v = rearrange(self.qkv(x), "b n (three heads d) -> three b heads n d", three=3,
                            heads=self.num_heads).unbind(0)
        return self.q_norm(q), self.k_norm(k), v

    def row_index(self, n: int) -> int:
        """Position of the token whose row is read: the loc token is last, the cls token first."""
        return n - 1 if self.row == "loc" else 0

    def row_logits(self, q: Tensor, k: Tensor) -> Tensor:
        """The read token's logits row alone, (B, heads, N, d) × 2 -> (B, heads, N), by broadcast and sum."""
        i = self.row_index(q.shape[2])
        return (q[:, :, i:i + 1] * k).sum(dim=-1) * self.scale

    def attention_explicit(self, q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """Reference path: output (B, heads, N, d), attention (B, heads, N, N), read row (B, N) or None."""
        logits = (q @ k.transpose(-2, -1)) * self.scale
        row = self.read(logits[:, :, self.row_index(q.shape[2])]) if self.read is not None else None
        attn = self.attn_drop(self.attend(logits))
        if self.apply_mask:
            attn = attn * rearrange(row, "b keys -> b 1 1 keys").to(attn.dtype)
        return attn @ v, attn, row

    def attention_sdpa(self, q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor | None]:
        """Fused path: only the read row is computed by hand; returns (B, heads, N, d), (B, N) or None."""
        row = self.read(self.row_logits(q, k)) if self.read is not None else None
        if self.apply_mask:
            v = (v * rearrange(row, "b keys -> b 1 keys 1")).to(v.dtype)
        dropout = self.attn_drop.p if self.training else 0.0
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout), row

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        gate = self.gate(x).sigmoid() if self.gate is not None else None
        q, k, v = self.split_heads(x)
        if self.attn_impl == "explicit":
            out, _, row = self.attention_explicit(q, k, v)
        else:
            out, row = self.attention_sdpa(q, k, v)
        out = self.norm(rearrange(out, "b heads n d -> b n (heads d)"))
        if gate is not None:
            out = out * gate
        return self.proj_drop(self.proj(out)), row


class ViTBlock(nn.Module):
    """timm's pre-norm `Block` (layer scale, stochastic depth) returning its attention's read row,
    (B, N, D) -> (B, N, D), (B, N) or None."""

    def __init__(self, block: TimmBlock, **attn_args) -> None:
        super().__init__()
        if type(block) is not TimmBlock:
            raise ValueError(f"SAT supports timm's pre-norm Block, got {type(block).__name__}")
        self.norm1, self.ls1, self.drop_path1 = block.norm1, block.ls1, block.drop_path1
        self.attn = ViTAttention(block.attn, **attn_args)
        self.norm2, self.mlp, self.ls2, self.drop_path2 = block.norm2, block.mlp, block.ls2, block.drop_path2

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        out, row = self.attn(self.norm1(x))
        x = x + self.drop_path1(self.ls1(out))
        x = x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))
        return x, row


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


class ViTBase(FrozenBackboneMixin, nn.Module):
    """A timm ViT backbone with a 3×3 conv head over its patch tokens, images (B, C, H, W) -> SATOutput.

    The shared body of SAT (`ViTSAT`) and the CAM and TS-CAM baselines; subclasses say which attention
    row the blocks read (`row`), whether they add the loc token, and how the maps are formed (`maps`).

    Args:
        backbone: a timm VisionTransformer (its modules are adopted under their own names).
        num_classes: classes of the conv head.
        num_query_blocks: how many final blocks are SAT's query blocks (masked attention, averaged masks;
            with a frozen backbone and `train_query_blocks`, the blocks that train).
        attn_impl: "sdpa" (fused kernel, the read row by hand) or "explicit" (materialised attention).
    """

    method = ""  # "sat", "cam" or "tscam": names the loss and the maps
    row: str | None = None  # the attention row each block reads

    def __init__(self, backbone: VisionTransformer, *, num_classes: int = 1000, num_query_blocks: int = 3,
                 attn_impl: str = "sdpa") -> None:
        super().__init__()
        depth = len(backbone.blocks)
        if not 1 <= num_query_blocks <= depth:
            raise ValueError(f"num_query_blocks={num_query_blocks} must be between 1 and depth={depth}")
        self.num_classes, self.in_chans, self.num_query_blocks = num_classes, backbone.in_chans, num_query_blocks
        self.num_features = self.embed_dim = backbone.embed_dim
        self.num_prefix_tokens, self.num_reg_tokens = backbone.num_prefix_tokens, backbone.num_reg_tokens
        self.has_class_token, self.no_embed_class = backbone.has_class_token, backbone.no_embed_class
        self.patch_embed = backbone.patch_embed
        self.img_size, self.grid_size = tuple(self.patch_embed.img_size), tuple(self.patch_embed.grid_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.cls_token, self.reg_token, self.pos_embed = backbone.cls_token, backbone.reg_token, backbone.pos_embed
        self.pos_drop, self.norm_pre = backbone.pos_drop, backbone.norm_pre
        self.blocks = nn.ModuleList([
            ViTBlock(block, row=self.row, apply_mask=self.row == "loc" and i >= depth - num_query_blocks,
                     attn_impl=attn_impl)
            for i, block in enumerate(backbone.blocks)])
        self.norm = backbone.norm
        self.head = nn.Conv2d(self.embed_dim, num_classes, 3, padding=1)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """Tokens and position embeddings stay out of weight decay (timm's rule, and the official SAT's)."""
        names = {"pos_embed", "cls_token", "reg_token", "loc_token", "loc_embed"}
        return names & {name for name, _ in self.named_parameters()}

    def set_attn_impl(self, attn_impl: str) -> None:
        """Switch every block between the "sdpa" and "explicit" attention paths."""
        check_attn_impl(attn_impl)
        for block in self.blocks:
            block.attn.attn_impl = attn_impl

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the conv head with a fresh one for `num_classes` classes."""
        self.num_classes = num_classes
        self.head = nn.Conv2d(self.embed_dim, num_classes, 3, padding=1).to(self.head.weight)

    def _check_images(self, x: Tensor) -> None:
        expected = (self.in_chans, *self.img_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"{type(self).__name__} expects images of shape (B, {expected[0]}, {expected[1]}, "
                             f"{expected[2]}), got {tuple(x.shape)}; create the model with "
                             f"img_size={tuple(x.shape[-2:])} to use this size")

    def _pos_embed(self, x: Tensor) -> Tensor:
        """Prefix tokens and position embeddings as the backbone adds them, (B, N_patches, D) -> (B, N, D).

        `no_embed_class` backbones (DeiT-III, DINOv2 with registers) embed the patches only, then
        prepend; the others prepend, then embed every token.
        """
        prefix = [repeat(t, "1 n d -> b n d", b=x.shape[0]) for t in (self.cls_token, self.reg_token) if t is not None]
        if self.pos_embed is not None and self.no_embed_class:
            x = x + self.pos_embed
        x = torch.cat([*prefix, x], dim=1)
        if self.pos_embed is not None and not self.no_embed_class:
            x = x + self.pos_embed
        return x

    def forward_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Images to normed tokens and every block's read row over the patches,
        (B, C, H, W) -> (B, N, D), (B, depth, rows, cols) (depth 0 when the blocks read no row)."""
        self._check_images(x)
        x = self.norm_pre(self.pos_drop(self._pos_embed(self.patch_embed(x))))
        rows = []
        for block in self.blocks:
            x, row = block(x)
            if row is not None:
                rows.append(self.patch_part(row))
        if rows:
            grid = rearrange(torch.stack(rows, dim=1), "b depth (rows cols) -> b depth rows cols",
                             rows=self.grid_size[0])
        else:
            grid = x.new_zeros(x.shape[0], 0, *self.grid_size)
        return self.norm(x), grid

    def patch_part(self, tokens: Tensor) -> Tensor:
        """The patch tokens' entries, without prefix and loc tokens, (B, N, ...) -> (B, rows·cols, ...)."""
        return tokens[:, self.num_prefix_tokens:self.num_prefix_tokens + self.num_patches]

    def forward_head(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Patch tokens through the conv head, (B, N, D) -> logits (B, classes), maps (B, classes, rows, cols)."""
        grid = rearrange(self.patch_part(x), "b (rows cols) d -> b d rows cols", rows=self.grid_size[0])
        class_maps = self.head(grid)
        return reduce(class_maps, "b classes rows cols -> b classes", "mean"), class_maps

    def maps(self, rows: Tensor, logits: Tensor, class_maps: Tensor) -> SATOutput:
        """The method's maps from the blocks' rows and the head's output."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> SATOutput:
        tokens, rows = self.forward_features(x)
        logits, class_maps = self.forward_head(tokens)
        return self.maps(rows, logits, class_maps)


class ViTSAT(ViTBase):
    """SAT on a timm ViT: the loc token after the patches, masks from its attention row, (B, C, H, W) -> SATOutput."""

    method = "sat"
    row = "loc"

    def __init__(self, backbone: VisionTransformer, **kwargs) -> None:
        super().__init__(backbone, **kwargs)
        self.loc_token = nn.Parameter(torch.zeros(1, 1, self.embed_dim))
        self.loc_embed = nn.Parameter(torch.zeros(1, 1, self.embed_dim))
        trunc_normal_(self.loc_token, std=0.02)  # the official SAT's init of both
        trunc_normal_(self.loc_embed, std=0.02)

    def _pos_embed(self, x: Tensor) -> Tensor:
        """The backbone's tokens, then the loc token with its own position embedding, -> (B, N + 1, D)."""
        loc = repeat(self.loc_token + self.loc_embed, "1 1 d -> b 1 d", b=x.shape[0])
        return torch.cat([super()._pos_embed(x), loc], dim=1)

    def localization_map(self, masks: Tensor) -> Tensor:
        """Mean of the query blocks' masks, (B, depth, rows, cols) -> (B, rows, cols)."""
        return masks[:, -self.num_query_blocks:].mean(dim=1)

    def maps(self, rows: Tensor, logits: Tensor, class_maps: Tensor) -> SATOutput:
        return SATOutput(logits, self.localization_map(rows), rows, class_maps)


def convstem_vit(*, img_size: int | tuple[int, int] = 96, stem_widths: tuple[int, ...] = (24, 48, 96),
                 embed_dim: int = 96, depth: int = 4, num_heads: int = 4, mlp_ratio: float = 2.0,
                 qkv_bias: bool = True, in_chans: int = 3, **kwargs) -> VisionTransformer:
    """The conv-stem SAT's backbone as a timm VisionTransformer (no classifier), for its baselines.

    Same stem, widths, LayerNorm eps (1e-6) and initialisation as `sat_tiny_convstem` (timm's, but for
    the cls token: SAT's trunc_normal(.02) instead of N(0, 1e-6)), so that the baselines trained from
    scratch start where SAT does. kwargs go to VisionTransformer.
    """
    def embed(*, img_size, in_chans, embed_dim, **_) -> ConvStem:  # timm also passes patch_size, bias, ...
        return ConvStem(img_size, in_chans, embed_dim, tuple(stem_widths))

    backbone = VisionTransformer(img_size=img_size, patch_size=2 ** len(stem_widths), in_chans=in_chans,
                                 num_classes=0, global_pool="", embed_dim=embed_dim, depth=depth,
                                 num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, embed_layer=embed,
                                 norm_layer=partial(nn.LayerNorm, eps=1e-6), **kwargs)
    trunc_normal_(backbone.cls_token, std=0.02)
    return backbone


def convert_checkpoint(state_dict: Mapping[str, Tensor], model: ViTBase) -> dict[str, Tensor]:
    """A timm ViT checkpoint in `model`'s names: timm's own conversion (OpenAI CLIP and original DINOv2
    layouts; patch and position embeddings resampled to the model's grid), classifier still in.

    A backbone pooled through `fc_norm` (EVA, MAE-style ViTs) has no `norm`; its `fc_norm` becomes the
    norm over the patch tokens.
    """
    state_dict = timm_checkpoint_filter_fn(dict(state_dict), model)
    if "norm.weight" not in state_dict and "fc_norm.weight" in state_dict and isinstance(model.norm, nn.LayerNorm):
        state_dict = {("norm." + k.removeprefix("fc_norm.") if k.startswith("fc_norm.") else k): v
                      for k, v in state_dict.items()}
    return state_dict


def checkpoint_filter_fn(state_dict: Mapping[str, Tensor], model: ViTBase) -> dict[str, Tensor]:
    """A timm ViT checkpoint for `model` (`convert_checkpoint`), without the backbone's classifier."""
    return {k: v for k, v in convert_checkpoint(state_dict, model).items() if not k.startswith(CLASSIFIER_KEYS)}
