"""Transformer pieces of SAT: the localization token's mask, attention with two paths, the block.

Every block reads one row of its attention logits, the localization token's (the last token), and
turns it into a mask over all keys: `sigmoid(mean over heads of q_loc · kᵀ · scale)`. In the final
`num_query_blocks` blocks the attention is multiplied by that mask, `(softmax(S) ⊙ m) · V`.

Two paths compute the same thing:
- "explicit" materialises the logits and the attention (annotated-transformer style), the reference;
- "sdpa" computes only the localization token's 1×N logits row by hand and folds the mask into the
  values, `(softmax(S) ⊙ m) · V = softmax(S) · (m ⊙ V)`, leaving the rest to the fused kernel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from timm.layers import DropPath, Mlp
from torch import Tensor, nn

ATTN_IMPLS = ("sdpa", "explicit")


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


class SATAttention(nn.Module):
    """Multi-head self-attention that also returns the localization token's mask, (B, N, D) -> (B, N, D), (B, N)."""

    def __init__(self, dim: int, num_heads: int, *, qkv_bias: bool = True, apply_mask: bool = False,
                 proj_drop: float = 0.0, attn_impl: str = "sdpa") -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"embed_dim={dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.apply_mask = apply_mask  # True in the final num_query_blocks blocks
        self.attn_impl = check_attn_impl(attn_impl)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.to_mask = TokenMask()
        self.attend = nn.Softmax(dim=-1)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def split_heads(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Project tokens to queries, keys and values, (B, N, D) -> 3 × (B, heads, N, D/heads)."""
        qkv = rearrange(self.qkv(x), "b n (three heads d) -> three b heads n d", three=3, heads=self.num_heads)
        return qkv.unbind(0)

    def logits(self, q: Tensor, k: Tensor) -> Tensor:
        """Scaled dot products, (B, heads, Nq, d), (B, heads, N, d) -> (B, heads, Nq, N)."""
        return (q @ k.transpose(-2, -1)) * self.scale

    def loc_logits(self, q: Tensor, k: Tensor) -> Tensor:
        """The localization token's logits row alone, (B, heads, N, d) × 2 -> (B, heads, N).

        A broadcast product and sum rather than a matmul: it saves only views of q and k for backward.
        """
        return (q[:, :, -1:] * k).sum(dim=-1) * self.scale

    def attention_explicit(self, q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Reference path: returns output (B, heads, N, d), attention (B, heads, N, N) and mask (B, N)."""
        logits = self.logits(q, k)
        mask = self.to_mask(logits[:, :, -1])
        attn = self.attend(logits)
        if self.apply_mask:
            attn = attn * rearrange(mask, "b keys -> b 1 1 keys").to(attn.dtype)
        return attn @ v, attn, mask

    def attention_sdpa(self, q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Fused path: only the localization row is computed by hand; returns (B, heads, N, d), (B, N)."""
        mask = self.to_mask(self.loc_logits(q, k))
        if self.apply_mask:
            v = (v * rearrange(mask, "b keys -> b 1 keys 1")).to(v.dtype)
        return F.scaled_dot_product_attention(q, k, v), mask

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        q, k, v = self.split_heads(x)
        if self.attn_impl == "explicit":
            out, _, mask = self.attention_explicit(q, k, v)
        else:
            out, mask = self.attention_sdpa(q, k, v)
        out = rearrange(out, "b heads n d -> b n (heads d)")
        return self.proj_drop(self.proj(out)), mask


class Block(nn.Module):
    """Pre-norm transformer block returning its localization mask, (B, N, D) -> (B, N, D), (B, N)."""

    def __init__(self, dim: int, num_heads: int, *, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 apply_mask: bool = False, drop: float = 0.0, drop_path: float = 0.0,
                 attn_impl: str = "sdpa") -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = SATAttention(dim, num_heads, qkv_bias=qkv_bias, apply_mask=apply_mask,
                                 proj_drop=drop, attn_impl=attn_impl)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        out, mask = self.attn(self.norm1(x))
        x = x + self.drop_path(out)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x, mask


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
