"""The attention, the block and the conv stem: what they compute, read straight from the weights."""

import pytest
import torch
import torch.nn.functional as F
from timm.layers import Attention
from timm.models.vision_transformer import Block as TimmBlock

from satlib.models.blocks import Block, ConvStem, SATAttention


def timm_attention(dim: int = 24, heads: int = 3, **kwargs) -> Attention:
    attn = Attention(dim, num_heads=heads, qkv_bias=True, norm_layer=torch.nn.LayerNorm, **kwargs)
    torch.nn.init.normal_(attn.qkv.weight, std=0.5)  # logits far from 0, so masks far from 0.5
    return attn


def reference_attention(attn: SATAttention, x: torch.Tensor):
    """SAT attention read straight from the weights (qk-norm included): output (B, N, D), mask (B, N)."""
    B, N, _ = x.shape
    q, k, v = F.linear(x, attn.qkv.weight, attn.qkv.bias).chunk(3, dim=-1)
    q, k, v = (t.reshape(B, N, attn.num_heads, attn.head_dim).transpose(1, 2) for t in (q, k, v))
    q, k = attn.q_norm(q), attn.k_norm(k)
    scores = torch.einsum("bhqd,bhkd->bhqk", q, k) / attn.head_dim ** 0.5
    mask = torch.sigmoid(scores[:, :, N - 1, :].mean(dim=1))
    weights = scores.softmax(dim=-1)
    if attn.apply_mask:
        weights = weights * mask[:, None, None, :]
    out = (weights @ v).transpose(1, 2).reshape(B, N, -1)
    return F.linear(out, attn.proj.weight, attn.proj.bias), mask


@pytest.mark.parametrize("attn_impl", ["explicit", "sdpa"])
@pytest.mark.parametrize("qk_norm", [False, True])
def test_attention_matches_timm_and_the_reference(seeded, attn_impl, qk_norm):
    source = timm_attention(qk_norm=qk_norm).eval()
    x = torch.randn(2, 7, 24)
    plain = SATAttention(source, row="loc", apply_mask=False, attn_impl=attn_impl)
    torch.testing.assert_close(plain(x)[0], source(x), rtol=1e-5, atol=1e-6)  # unmasked: timm's output
    masked = SATAttention(source, row="loc", apply_mask=True, attn_impl=attn_impl)
    out, mask = masked(x)
    ref_out, ref_mask = reference_attention(masked, x)
    torch.testing.assert_close(mask, ref_mask, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-6)
    assert (out - plain(x)[0]).abs().max() > 1e-3  # the mask changes the output


def test_cls_row_is_the_softmax_of_token_0_averaged_over_heads(seeded):
    attn = SATAttention(timm_attention(), row="cls", attn_impl="explicit")
    x = torch.randn(2, 6, 24)
    q, k, _ = attn.split_heads(x)
    expected = attn.logits(q, k)[:, :, 0].softmax(dim=-1).mean(dim=1)
    for attn_impl in ("explicit", "sdpa"):
        attn.attn_impl = attn_impl
        torch.testing.assert_close(attn(x)[1], expected)
    assert SATAttention(timm_attention(), row=None)(x)[1] is None


def test_explicit_path_exposes_logits_mask_and_attention(seeded):
    attn = SATAttention(timm_attention(16, 4), row="loc", apply_mask=True, attn_impl="explicit")
    q, k, v = attn.split_heads(torch.randn(3, 5, 16))
    assert q.shape == k.shape == v.shape == (3, 4, 5, 4)
    out, weights, mask = attn.attention_explicit(q, k, v)
    assert out.shape == (3, 4, 5, 4) and weights.shape == (3, 4, 5, 5) and mask.shape == (3, 5)
    torch.testing.assert_close(attn.row_logits(q, k), attn.logits(q, k)[:, :, -1])
    # masked attention rows sum to the softmax-weighted mean of the mask, not to 1
    expected_rows = (attn.logits(q, k).softmax(-1) * mask[:, None, None, :]).sum(-1)
    torch.testing.assert_close(weights.sum(-1), expected_rows)


@pytest.mark.parametrize("attn_impl", ["explicit", "sdpa"])
def test_attention_dropout_applies_while_training_on_both_paths(seeded, attn_impl):
    """As the official SAT: attention dropout after the mask (attn_drop), in training mode only."""
    source = timm_attention(attn_drop=0.5)
    attn = SATAttention(source, row="loc", apply_mask=True, attn_impl=attn_impl)
    x = torch.randn(2, 9, 24)
    attn.train()
    assert not torch.allclose(attn(x)[0], attn(x)[0])
    attn.eval()
    torch.testing.assert_close(attn(x)[0], reference_attention(attn, x)[0], rtol=1e-5, atol=1e-6)


def test_attention_rejects_bad_arguments():
    with pytest.raises(ValueError, match="attn_impl='flash'"):
        SATAttention(timm_attention(), attn_impl="flash")
    with pytest.raises(ValueError, match="only the loc token's row is a mask"):
        SATAttention(timm_attention(), row="cls", apply_mask=True)
    with pytest.raises(ValueError, match="SAT supports timm's Attention, got Linear"):
        SATAttention(torch.nn.Linear(4, 4))


def test_block_computes_timms_block_and_returns_its_row(seeded):
    source = TimmBlock(16, 2, qkv_bias=True, init_values=0.5).eval()
    block = Block(source, row="loc")
    x = torch.randn(2, 9, 16)
    out, mask = block(x)
    torch.testing.assert_close(out, source(x), rtol=1e-5, atol=1e-6)
    assert mask.shape == (2, 9) and ((mask > 0) & (mask < 1)).all()


def test_conv_stem_grid_and_layers(seeded):
    stem = ConvStem(img_size=96, in_chans=3, embed_dim=40, widths=(8, 16, 24))
    assert stem.grid_size == (12, 12) and stem.num_patches == 144 and stem.patch_size == (8, 8)
    assert stem(torch.randn(2, 3, 96, 96)).shape == (2, 144, 40)
    convs = [m for m in stem.stem.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.stride[0] for c in convs] == [2, 2, 1, 2, 1]  # extra stride-1 conv after stages 2 and 3
    assert [c.out_channels for c in convs] == [8, 16, 16, 24, 24]
    assert ConvStem(img_size=(64, 32), widths=(8, 8)).grid_size == (16, 8)


def test_conv_stem_rejects_indivisible_size():
    with pytest.raises(ValueError, match="not divisible by the conv stem's stride 8"):
        ConvStem(img_size=100)


def test_conv_stem_tokens_are_centred_on_their_patches(seeded):
    """With mirror-symmetric kernels the stem commutes with a horizontal flip only if every token's
    receptive field is centred on its patch (a 3×3 stride-2 stem shifts it by 3.5 pixels)."""
    stem = ConvStem(img_size=32, in_chans=3, embed_dim=8, widths=(4, 8, 8)).eval()
    with torch.no_grad():
        for conv in (m for m in stem.modules() if isinstance(m, torch.nn.Conv2d)):
            conv.weight.copy_(conv.weight + conv.weight.flip(-1))
    x = torch.randn(2, 3, 32, 32)
    grid = lambda t: t.reshape(2, 4, 4, 8)  # noqa: E731  (b, rows, cols, d)
    torch.testing.assert_close(grid(stem(x.flip(-1))), grid(stem(x)).flip(2))
