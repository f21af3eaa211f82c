"""SAT: a DeiT whose extra localization token turns its attention into an object map.

Tokens are `[cls, patches..., loc]`. Every block reads the loc token's attention logits as a mask over
the tokens; the final `num_query_blocks` blocks multiply their attention by it, and the localization
map is the mean of those blocks' masks over the patch grid. Classification runs a 3×3 conv head over
the normed patch tokens and averages the class maps.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from einops import rearrange, reduce, repeat
from timm.layers import PatchEmbed, trunc_normal_
from torch import Tensor, nn

from satlib.models.blocks import Block, ConvStem, SATAttention, check_attn_impl
from satlib.models.freeze import FrozenBackboneMixin


class SATOutput(NamedTuple):
    """What SAT (and its CAM and TS-CAM baselines) return for a batch of B images on a rows×cols patch grid."""

    logits: Tensor  # (B, classes)
    # (B, rows, cols): the method's map. SAT: mean of the query blocks' masks, in [0, 1]; a baseline:
    # the predicted class's map, unnormalised (the evaluator min-max normalises every map)
    loc_map: Tensor
    # (B, depth, rows, cols): every block's localization mask over the patches (TS-CAM: every block's
    # cls attention to the patches; CAM: none, depth 0)
    masks: Tensor
    class_maps: Tensor  # (B, classes, rows, cols): the conv head before pooling (the network's own CAM)
    # (B, classes, rows, cols): a class-specific method's map of every class (CAM, TS-CAM); None for SAT,
    # whose map is the same for every class
    class_loc_maps: Tensor | None = None


class SAT(FrozenBackboneMixin, nn.Module):
    """Spatial-aware token ViT, images (B, C, H, W) -> SATOutput.

    Args:
        img_size: input side (or (H, W)); the model accepts only this size.
        patch_size: side of a patch for the linear patch embedding (ignored with `stem_widths`).
        in_chans: image channels.
        num_classes: classes of the conv head.
        embed_dim, depth, num_heads, mlp_ratio, qkv_bias: the transformer (D, blocks, heads, MLP width).
        num_query_blocks: how many final blocks multiply attention by the loc token's mask; the
            localization map averages those same blocks' masks.
        stem_widths: channel widths of a conv stem (`ConvStem`) instead of the linear patch embedding.
        drop_rate: dropout after the position embedding, attention projection and MLP.
        drop_path_rate: stochastic depth, rising linearly to this value over the blocks.
        attn_impl: "sdpa" (fused kernel, the loc row by hand) or "explicit" (materialised attention).
    """

    method = "sat"  # names the training loss (satlib.losses.build_loss)
    num_prefix_tokens = 1  # tokens before the patches (cls); the loc token comes after them

    def __init__(self, *, img_size: int | tuple[int, int] = 224, patch_size: int = 16, in_chans: int = 3,
                 num_classes: int = 1000, embed_dim: int = 384, depth: int = 12, num_heads: int = 6,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, num_query_blocks: int = 3,
                 stem_widths: tuple[int, ...] | None = None, drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0, attn_impl: str = "sdpa") -> None:
        super().__init__()
        if not 1 <= num_query_blocks <= depth:
            raise ValueError(f"num_query_blocks={num_query_blocks} must be between 1 and depth={depth}")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.num_features = self.embed_dim = embed_dim
        self.num_query_blocks = num_query_blocks
        if stem_widths:
            self.patch_embed = ConvStem(img_size, in_chans, embed_dim, tuple(stem_widths))
        else:
            self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        self.img_size = tuple(self.patch_embed.img_size)
        self.grid_size = tuple(self.patch_embed.grid_size)

        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.loc_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.patch_embed.num_patches, embed_dim))
        self.loc_embed = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_drop = nn.Dropout(drop_rate)

        drop_paths = torch.linspace(0, drop_path_rate, depth).tolist()
        self.blocks = nn.ModuleList([
            Block(embed_dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                  apply_mask=i >= depth - num_query_blocks, drop=drop_rate, drop_path=drop_paths[i],
                  attn_impl=attn_impl)
            for i in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = nn.Conv2d(embed_dim, num_classes, 3, padding=1)
        self.init_weights()

    def init_weights(self) -> None:
        """Official init: trunc_normal(.02) tokens, embeddings and Linears; LayerNorm 1/0; convs as PyTorch."""
        for param in (self.pos_embed, self.loc_embed, self.cls_token, self.loc_token):
            trunc_normal_(param, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """Parameter names the official optimizer keeps out of weight decay."""
        return {"pos_embed", "cls_token", "loc_embed", "loc_token"}

    def set_attn_impl(self, attn_impl: str) -> None:
        """Switch every block between the "sdpa" and "explicit" attention paths."""
        check_attn_impl(attn_impl)
        for module in self.modules():
            if isinstance(module, SATAttention):
                module.attn_impl = attn_impl

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the conv head with a fresh one for `num_classes` classes."""
        self.num_classes = num_classes
        self.head = nn.Conv2d(self.embed_dim, num_classes, 3, padding=1).to(self.norm.weight)

    def _check_images(self, x: Tensor) -> None:
        expected = (self.in_chans, *self.img_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"SAT expects images of shape (B, {expected[0]}, {expected[1]}, {expected[2]}), "
                             f"got {tuple(x.shape)}; create the model with img_size={tuple(x.shape[-2:])} "
                             f"to use this size")

    def _pos_embed(self, x: Tensor) -> Tensor:
        """Add the cls and loc tokens and their position embeddings, (B, N_patches, D) -> (B, N, D)."""
        cls = repeat(self.cls_token, "1 1 d -> b 1 d", b=x.shape[0])
        loc = repeat(self.loc_token, "1 1 d -> b 1 d", b=x.shape[0])
        x = torch.cat([cls, x, loc], dim=1) + torch.cat([self.pos_embed, self.loc_embed], dim=1)
        return self.pos_drop(x)

    def forward_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Images to normed tokens and every block's mask, (B, C, H, W) -> (B, N, D), (B, depth, rows, cols)."""
        self._check_images(x)
        x = self._pos_embed(self.patch_embed(x))
        masks = []
        for block in self.blocks:
            x, mask = block(x)
            masks.append(mask[:, 1:-1])  # keep the patches' keys, drop cls and loc
        masks = rearrange(torch.stack(masks, dim=1), "b depth (rows cols) -> b depth rows cols",
                          rows=self.grid_size[0])
        return self.norm(x), masks

    def localization_map(self, masks: Tensor) -> Tensor:
        """Mean of the query blocks' masks, (B, depth, rows, cols) -> (B, rows, cols)."""
        return masks[:, -self.num_query_blocks:].mean(dim=1)

    def forward_head(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Patch tokens through the conv head, (B, N, D) -> logits (B, classes), maps (B, classes, rows, cols)."""
        grid = rearrange(x[:, 1:-1], "b (rows cols) d -> b d rows cols", rows=self.grid_size[0])
        class_maps = self.head(grid)
        return reduce(class_maps, "b classes rows cols -> b classes", "mean"), class_maps

    def forward(self, x: Tensor) -> SATOutput:
        tokens, masks = self.forward_features(x)
        logits, class_maps = self.forward_head(tokens)
        return SATOutput(logits, self.localization_map(masks), masks, class_maps)
