"""Transformer pieces of SAT: the rows a block reads, attention with two paths, the block, the conv stem.

`SATAttention` and `Block` adopt the modules of timm's `Attention` and pre-norm `Block` under their own
names (qkv, q_norm, k_norm, proj, layer scale, stochastic depth), so every timm ViT checkpoint, DeiT's
and the official SAT's included, loads as it is. What they add is one row of the attention logits,
read by hand:

- SAT reads the localization token's row (the last token) and turns it into a mask over all keys,
  `sigmoid(mean over heads of q_loc · kᵀ · scale)` (`TokenMask`). In the final `num_query_blocks`
  blocks the attention is multiplied by that mask, `(softmax(S) ⊙ m) · V`.
- TS-CAM reads the cls token's row (the first token) as its softmax over keys, averaged over heads
  (`ClsAttention`); CAM reads no row.

Two paths compute the same thing:
- "explicit" materialises the logits and the attention (annotated-transformer style), the reference;
- "sdpa" computes only the read token's 1×N logits row by hand and folds the mask into the values,
  `(softmax(S) ⊙ m) · V = softmax(S) · (m ⊙ V)`, leaving the rest to the fused kernel.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from timm.layers import Attention
from timm.models.vision_transformer import Block as TimmBlock
from torch import Tensor, nn

ATTN_IMPLS = ("sdpa", "explicit")
ROWS = ("loc", "cls", None)  # the attention row a block reads: SAT's loc token, TS-CAM's cls token, none


def check_attn_impl(attn_impl: str) -> str:
    """Return `attn_impl` if it names a known attention path, else raise a ValueError."""
    if attn_impl not in ATTN_IMPLS:
        raise ValueError(f"attn_impl={attn_impl!r}: expected one of {ATTN_IMPLS}")
    return attn_impl


class TokenMask(nn.Module):
    """Localization token's logits row to a mask over keys, (B, heads, N) -> (B, N) in (0, 1).

    A module (like vit-pytorch's `attend`) so a forward hook can read or replace the mask. The mean and
    sigmoid run in float32 so the mask stays exact under bf16 autocast.
    """

    def forward(self, loc_logits: Tensor) -> Tensor:
        return torch.sigmoid(loc_logits.float().mean(dim=1))


class ClsAttention(nn.Module):
    """The cls token's logits row to its attention over keys, averaged over heads, (B, heads, N) -> (B, N).

    TS-CAM's reading of a block (softmax over keys, then the mean over heads), in float32. A module so
    a forward hook can read it.
    """

    def forward(self, cls_logits: Tensor) -> Tensor:
        return cls_logits.float().softmax(dim=-1).mean(dim=1)


class SATAttention(nn.Module):
    """timm's `Attention` under its own names, also returning the row it reads, (B, N, D) -> (B, N, D), (B, N) or None.

    Args:
        attn: the timm `Attention` whose modules (qkv, q_norm, k_norm, attn_drop, norm, gate, proj,
            proj_drop) are adopted.
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
        self.to_row = TokenMask() if row == "loc" else ClsAttention() if row == "cls" else None
        self.attend = nn.Softmax(dim=-1)
        self.attn_drop, self.norm, self.gate = attn.attn_drop, attn.norm, getattr(attn, "gate", None)
        self.proj, self.proj_drop = attn.proj, attn.proj_drop

    def split_heads(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Queries, keys (qk-normed where the backbone is) and values, (B, N, D) -> 3 × (B, heads, N, d)."""
        q, k, v = rearrange(self.qkv(x), "b n (three heads d) -> three b heads n d", three=3,
                            heads=self.num_heads).unbind(0)
        return self.q_norm(q), self.k_norm(k), v

    def logits(self, q: Tensor, k: Tensor) -> Tensor:
        """Scaled dot products, (B, heads, Nq, d), (B, heads, N, d) -> (B, heads, Nq, N)."""
        return (q @ k.transpose(-2, -1)) * self.scale

    def row_index(self, num_tokens: int) -> int:
        """Position of the token whose row is read: the loc token is last, the cls token first."""
        return num_tokens - 1 if self.row == "loc" else 0

    def row_logits(self, q: Tensor, k: Tensor) -> Tensor:
        """The read token's logits row alone, (B, heads, N, d) × 2 -> (B, heads, N).

        A broadcast product and sum rather than a matmul: it saves only views of q and k for backward.
        """
        i = self.row_index(q.shape[2])
        return (q[:, :, i:i + 1] * k).sum(dim=-1) * self.scale

    def attention_explicit(self, q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """Reference path: output (B, heads, N, d), attention (B, heads, N, N), read row (B, N) or None.

        As the official SAT: softmax, then the mask over keys, then attention dropout.
        """
        logits = self.logits(q, k)
        row = self.to_row(logits[:, :, self.row_index(q.shape[2])]) if self.to_row is not None else None
        attn = self.attend(logits)
        if self.apply_mask:
            attn = attn * rearrange(row, "b keys -> b 1 1 keys").to(attn.dtype)
        attn = self.attn_drop(attn)
        return attn @ v, attn, row

    def attention_sdpa(self, q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor | None]:
        """Fused path: only the read row is computed by hand; returns (B, heads, N, d), (B, N) or None.

        The mask over keys goes into the values, `(softmax(S) ⊙ m) · V = softmax(S) · (m ⊙ V)`, and
        commutes with the kernel's attention dropout, `drop(softmax(S) ⊙ m) · V = drop(softmax(S)) · (m ⊙ V)`:
        the same output as the explicit path, without the (B, heads, N, N) attention.
        """
        row = self.to_row(self.row_logits(q, k)) if self.to_row is not None else None
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


class Block(nn.Module):
    """timm's pre-norm `Block` (layer scale, stochastic depth) returning its attention's read row,
    (B, N, D) -> (B, N, D), (B, N) or None. kwargs go to `SATAttention`."""

    def __init__(self, block: TimmBlock, **attn_args: Any) -> None:
        super().__init__()
        if type(block) is not TimmBlock:
            raise ValueError(f"SAT supports timm's pre-norm Block, got {type(block).__name__}")
        self.norm1, self.ls1, self.drop_path1 = block.norm1, block.ls1, block.drop_path1
        self.attn = SATAttention(block.attn, **attn_args)
        self.norm2, self.mlp, self.ls2, self.drop_path2 = block.norm2, block.mlp, block.ls2, block.drop_path2

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        out, row = self.attn(self.norm1(x))
        x = x + self.drop_path1(self.ls1(out))
        x = x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))
        return x, row


def conv_bn_gelu(in_chans: int, out_chans: int, stride: int) -> nn.Sequential:
    """Convolution, BatchNorm, GELU, (B, C_in, H, W) -> (B, C_out, H/stride, W/stride).

    Stride 1: 3×3, padding 1. Stride 2: 4×4, padding 1, so output pixel i is centred on input pixels
    2i and 2i+1 (a 3×3 stride-2 conv centres it on 2i: three of them put every token's receptive
    field 3.5 pixels up-left of its patch, and the localization map would be drawn shifted).
    """
    kernel = 3 if stride == 1 else 2 * stride
    return nn.Sequential(
        nn.Conv2d(in_chans, out_chans, kernel, stride=stride, padding=(kernel - stride) // 2, bias=False),
        nn.BatchNorm2d(out_chans),
        nn.GELU(),
    )


class ConvStem(nn.Module):
    """Convolutional patch embedding, (B, C, H, W) -> (B, N, D) with one token per 2^stages pixels.

    Each width is a stride-2 stage; every stage after the first adds a stride-1 conv; a 1×1 conv maps to
    width D. widths=(32, 64, 128) gives stride-8 tokens. Exposes timm PatchEmbed's attributes.
    """

    def __init__(self, img_size: int | tuple[int, int] = 96, in_chans: int = 3, embed_dim: int = 128,
                 widths: tuple[int, ...] = (32, 64, 128)) -> None:
        super().__init__()
        stride = 2 ** len(widths)
        self.img_size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        if any(side % stride for side in self.img_size):
            raise ValueError(f"img_size={self.img_size} is not divisible by the conv stem's stride {stride} "
                             f"(stem widths {tuple(widths)})")
        self.patch_size = (stride, stride)
        self.grid_size = (self.img_size[0] // stride, self.img_size[1] // stride)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        layers, chans = [], in_chans
        for stage, width in enumerate(widths):
            layers.append(conv_bn_gelu(chans, width, stride=2))
            if stage > 0:
                layers.append(conv_bn_gelu(width, width, stride=1))
            chans = width
        self.stem = nn.Sequential(*layers)
        self.proj = nn.Conv2d(chans, embed_dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        return rearrange(self.proj(self.stem(x)), "b d rows cols -> b (rows cols) d")
