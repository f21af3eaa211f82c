"""SAT: a ViT whose extra localization token turns its attention into an object map.

Tokens are `[prefix tokens (cls, registers)..., patches..., loc]`; on DeiT, the official model,
`[cls, patches..., loc]`. Every block reads the loc token's attention logits as a mask over the
tokens; the final `num_query_blocks` blocks multiply their attention by it, and the localization map
is the mean of those blocks' masks over the patch grid. Classification runs a 3×3 conv head over the
normed patch tokens and averages the class maps.

The backbone is a timm VisionTransformer (`satlib.models.backbones`): `ConvHeadViT` adopts its modules
under their own names, so DeiT's checkpoints and the official SAT's load as they are. `ConvHeadViT` is
the one body of SAT and of its CAM and TS-CAM baselines (`satlib.models.baselines`); they differ in
the row their blocks read (`row`), the loc token (SAT's alone) and how the maps are formed (`maps`).
Layer scale, qk-norm, the pre-norm (CLIP's `norm_pre`) and `no_embed_class` position embeddings are
the backbone's own modules and flags, used as timm uses them.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from einops import rearrange, reduce, repeat
from timm.layers import trunc_normal_
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from satlib.models.blocks import Block, check_attn_impl
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


class ConvHeadViT(FrozenBackboneMixin, nn.Module):
    """A timm ViT backbone with a 3×3 conv head over its patch tokens, images (B, C, H, W) -> SATOutput.

    The shared body of SAT and the CAM and TS-CAM baselines; subclasses say which attention row the
    blocks read (`row`), what they add to the tokens (`_pos_embed`) and how the maps are formed (`maps`).

    Args:
        backbone: a timm VisionTransformer (`satlib.models.backbones.create_backbone`); its modules are
            adopted under their own names.
        num_classes: classes of the conv head.
        num_query_blocks: how many final blocks are SAT's query blocks (masked attention, averaged masks;
            with a frozen backbone and `train_query_blocks`, the blocks that train).
        attn_impl: "sdpa" (fused kernel, the read row by hand) or "explicit" (materialised attention).
        pretrained_cfg: timm's pretrained cfg of the model (mean, std, input size, weights' location).
    """

    method = ""  # "sat", "cam" or "tscam": names the loss (satlib.losses.build_loss) and the maps
    row: str | None = None  # the attention row each block reads

    def __init__(self, backbone: VisionTransformer, *, num_classes: int = 1000, num_query_blocks: int = 3,
                 attn_impl: str = "sdpa", pretrained_cfg: dict[str, Any] | None = None) -> None:
        super().__init__()
        depth = len(backbone.blocks)
        if not 1 <= num_query_blocks <= depth:
            raise ValueError(f"num_query_blocks={num_query_blocks} must be between 1 and depth={depth}")
        self.pretrained_cfg = self.default_cfg = dict(pretrained_cfg or {})  # timm's fields
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
            Block(block, row=self.row, apply_mask=self.row == "loc" and i >= depth - num_query_blocks,
                  attn_impl=attn_impl)
            for i, block in enumerate(backbone.blocks)])
        self.norm = backbone.norm
        self.head = nn.Conv2d(self.embed_dim, num_classes, 3, padding=1)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """Tokens and position embeddings stay out of weight decay (timm's rule; the official SAT defines the same
        names, but its scripts never read them: see `satlib.train.param_groups`)."""
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

    def backbone_tokens(self, x: Tensor) -> Tensor:
        """Prefix tokens and position embeddings as the backbone adds them, (B, N_patches, D) -> (B, N, D).

        `no_embed_class` backbones (DeiT-III, DINOv2 with registers) embed the patches only, then
        prepend; the others (DeiT) prepend, then embed every token.
        """
        prefix = [repeat(t, "1 n d -> b n d", b=x.shape[0]) for t in (self.cls_token, self.reg_token) if t is not None]
        if self.pos_embed is not None and self.no_embed_class:
            x = x + self.pos_embed
        x = torch.cat([*prefix, x], dim=1)
        if self.pos_embed is not None and not self.no_embed_class:
            x = x + self.pos_embed
        return x

    def _pos_embed(self, x: Tensor) -> Tensor:
        """The backbone's tokens with their position embeddings, then dropout, (B, N_patches, D) -> (B, N, D)."""
        return self.pos_drop(self.backbone_tokens(x))

    def patch_part(self, tokens: Tensor) -> Tensor:
        """The patch tokens' entries, without prefix and loc tokens, (B, N, ...) -> (B, rows·cols, ...)."""
        return tokens[:, self.num_prefix_tokens:self.num_prefix_tokens + self.num_patches]

    def forward_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Images to normed tokens and every block's read row over the patch grid,
        (B, C, H, W) -> (B, N, D), (B, depth, rows, cols) (depth 0 when the blocks read no row)."""
        self._check_images(x)
        x = self.norm_pre(self._pos_embed(self.patch_embed(x)))
        rows = []
        for block in self.blocks:
            x, row = block(x)
            if row is not None:
                rows.append(self.patch_part(row))  # keep the patches' keys, drop prefix and loc tokens
        if not rows:
            return self.norm(x), x.new_zeros(x.shape[0], 0, *self.grid_size)
        grid = rearrange(torch.stack(rows, dim=1), "b depth (rows cols) -> b depth rows cols", rows=self.grid_size[0])
        return self.norm(x), grid

    def forward_head(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Patch tokens through the conv head, (B, N, D) -> logits (B, classes), maps (B, classes, rows, cols)."""
        grid = rearrange(self.patch_part(x), "b (rows cols) d -> b d rows cols", rows=self.grid_size[0])
        class_maps = self.head(grid)
        return reduce(class_maps, "b classes rows cols -> b classes", "mean"), class_maps

    def maps(self, rows: Tensor, logits: Tensor, class_maps: Tensor) -> SATOutput:
        """The method's maps from the blocks' rows (B, depth, rows, cols) and the head's output."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> SATOutput:
        tokens, rows = self.forward_features(x)
        logits, class_maps = self.forward_head(tokens)
        return self.maps(rows, logits, class_maps)


class SAT(ConvHeadViT):
    """Spatial-aware token ViT: the loc token after the patches, masks from its attention row,
    images (B, C, H, W) -> SATOutput. Args as `ConvHeadViT`."""

    method = "sat"
    row = "loc"

    def __init__(self, backbone: VisionTransformer, **kwargs: Any) -> None:
        super().__init__(backbone, **kwargs)
        self.loc_token = nn.Parameter(torch.zeros(1, 1, self.embed_dim))
        self.loc_embed = nn.Parameter(torch.zeros(1, 1, self.embed_dim))
        trunc_normal_(self.loc_token, std=0.02)  # the official SAT's init of both
        trunc_normal_(self.loc_embed, std=0.02)

    def _pos_embed(self, x: Tensor) -> Tensor:
        """[prefix tokens..., patches..., loc], each with its position embedding, then dropout,
        (B, N_patches, D) -> (B, N, D). On DeiT: cat([cls, patches, loc]) + cat([pos_embed, loc_embed])."""
        loc = repeat(self.loc_token + self.loc_embed, "1 1 d -> b 1 d", b=x.shape[0])
        return self.pos_drop(torch.cat([self.backbone_tokens(x), loc], dim=1))

    def localization_map(self, masks: Tensor) -> Tensor:
        """Mean of the query blocks' masks, (B, depth, rows, cols) -> (B, rows, cols)."""
        return masks[:, -self.num_query_blocks:].mean(dim=1)

    def maps(self, rows: Tensor, logits: Tensor, class_maps: Tensor) -> SATOutput:
        return SATOutput(logits, self.localization_map(rows), rows, class_maps)
