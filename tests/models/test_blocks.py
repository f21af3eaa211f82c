import pytest
import torch
import torch.nn.functional as F

from satlib.models.blocks import Block, ConvStem, SATAttention


def reference_attention(attn: SATAttention, x: torch.Tensor, apply_mask: bool):
    """Plain-torch SAT attention read straight from the weights: output (B, N, D), mask (B, N)."""
    B, N, D = x.shape
    heads = attn.num_heads
    q, k, v = F.linear(x, attn.qkv.weight, attn.qkv.bias).chunk(3, dim=-1)
    q, k, v = (t.reshape(B, N, heads, D // heads).transpose(1, 2) for t in (q, k, v))
    scores = torch.einsum("bhqd,bhkd->bhqk", q, k) / (D // heads) ** 0.5
    mask = torch.sigmoid(scores[:, :, N - 1, :].mean(dim=1))
    weights = scores.softmax(dim=-1)
    if apply_mask:
        weights = weights * mask[:, None, None, :]
    out = (weights @ v).transpose(1, 2).reshape(B, N, D)
    return F.linear(out, attn.proj.weight, attn.proj.bias), mask


@pytest.mark.parametrize("attn_impl", ["explicit", "sdpa"])
@pytest.mark.parametrize("apply_mask", [False, True])
def test_attention_matches_plain_reference(seeded, attn_impl, apply_mask):
    attn = SATAttention(24, 3, apply_mask=apply_mask, attn_impl=attn_impl)
    torch.nn.init.normal_(attn.qkv.weight, std=0.5)
    x = torch.randn(2, 7, 24)
    out, mask = attn(x)
    ref_out, ref_mask = reference_attention(attn, x, apply_mask)
    torch.testing.assert_close(mask, ref_mask, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-6)


def test_mask_changes_output_only_when_applied(seeded):
    x = torch.randn(2, 6, 16)
    plain = SATAttention(16, 2, apply_mask=False)
    masked = SATAttention(16, 2, apply_mask=True)
    masked.load_state_dict(plain.state_dict())
    (out_plain, mask_plain), (out_masked, mask_masked) = plain(x), masked(x)
    torch.testing.assert_close(mask_plain, mask_masked)
    assert (out_plain - out_masked).abs().max() > 1e-3


def test_explicit_path_exposes_logits_mask_and_attention(seeded):
    attn = SATAttention(16, 4, apply_mask=True, attn_impl="explicit")
    q, k, v = attn.split_heads(torch.randn(3, 5, 16))
    assert q.shape == k.shape == v.shape == (3, 4, 5, 4)
    out, weights, mask = attn.attention_explicit(q, k, v)
    assert out.shape == (3, 4, 5, 4) and weights.shape == (3, 4, 5, 5) and mask.shape == (3, 5)
    # masked attention rows sum to the softmax-weighted mean of the mask, not to 1
    expected_rows = (attn.logits(q, k).softmax(-1) * mask[:, None, None, :]).sum(-1)
    torch.testing.assert_close(weights.sum(-1), expected_rows)


def test_attention_rejects_bad_arguments():
    with pytest.raises(ValueError, match="not divisible"):
        SATAttention(10, 3)
    with pytest.raises(ValueError, match="attn_impl='flash'"):
        SATAttention(12, 3, attn_impl="flash")


def test_block_returns_tokens_and_mask(seeded):
    block = Block(16, 2, drop_path=0.1)
    x, mask = block(torch.randn(2, 9, 16))
    assert x.shape == (2, 9, 16) and mask.shape == (2, 9)
    assert ((mask > 0) & (mask < 1)).all()


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
