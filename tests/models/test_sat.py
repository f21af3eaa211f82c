import copy

import pytest
import timm
import torch
from timm.layers import DropPath

import satlib
from satlib import SAT, SATLoss, SATOutput
from satlib.losses import build_loss

TINY = dict(img_size=32, patch_size=8, embed_dim=48, depth=4, num_heads=3, num_classes=5)


def tiny_sat(**kwargs) -> SAT:
    return SAT(**{**TINY, **kwargs})


def sharpen(model: SAT) -> SAT:
    """Larger qkv weights so the masks are far from 0.5 and the two paths are really exercised."""
    with torch.no_grad():
        for block in model.blocks:
            block.attn.qkv.weight.normal_(std=0.3)
    return model


@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.slow) if "_base_" in name else name
                                  for name in satlib.list_models()])  # DeiT-B: ~10 s on 2 cores
def test_every_variant_runs_forward_and_backward(seeded, name):
    model = satlib.create_model(name, num_classes=3, img_size=32)
    out = model(torch.randn(2, 3, 32, 32))
    rows, cols = model.grid_size
    depth = len(model.blocks)
    reading = {"sat": depth, "tscam": depth, "cam": 0}[model.method]  # blocks that read an attention row
    assert isinstance(out, SATOutput)
    assert out.logits.shape == (2, 3) and out.loc_map.shape == (2, rows, cols)
    assert out.masks.shape == (2, reading, rows, cols) and out.class_maps.shape == (2, 3, rows, cols)
    if model.method == "sat":
        assert out.class_loc_maps is None
    else:
        assert out.class_loc_maps.shape == (2, 3, rows, cols)
    build_loss(model.method)(out, torch.tensor([0, 2]))[0].backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad), name


def test_variant_sizes_match_deit():
    for name, (width, heads) in {"tiny": (192, 3), "small": (384, 6), "base": (768, 12)}.items():
        args = satlib.models.VARIANTS[f"sat_deit_{name}_patch16_224"]
        assert (args["embed_dim"], args["num_heads"], args["depth"], args["patch_size"]) == (width, heads, 12, 16)


def test_timm_create_model_finds_satlib_names(seeded):
    model = timm.create_model("sat_tiny_convstem", num_classes=4)
    assert isinstance(model, SAT) and model.grid_size == (12, 12)
    assert model.pretrained_cfg["input_size"] == (3, 96, 96)
    assert {name for name in satlib.list_models() if name.startswith("sat_")} <= set(timm.list_models("sat_*"))
    deit = timm.create_model("sat_deit_small_patch16_224", num_classes=2, img_size=64)
    assert deit.pretrained_cfg["hf_hub_id"] == "timm/deit_small_patch16_224.fb_in1k"


def test_convstem_is_configured_by_kwargs(seeded):
    model = satlib.create_model("sat_tiny_convstem", num_classes=6, img_size=64, embed_dim=32, depth=3,
                                num_heads=2, stem_widths=(8, 16), num_query_blocks=2, mlp_ratio=2.0)
    assert model.grid_size == (16, 16) and model.embed_dim == 32 and len(model.blocks) == 3
    assert [b.attn.apply_mask for b in model.blocks] == [False, True, True]
    assert model.blocks[0].mlp.fc1.out_features == 64
    out = model(torch.randn(1, 3, 64, 64))
    assert out.loc_map.shape == (1, 16, 16) and out.logits.shape == (1, 6)


def test_create_model_rejects_unknown_names_and_arguments():
    with pytest.raises(ValueError, match="unknown model 'sat_huge'"):
        satlib.create_model("sat_huge")
    with pytest.raises(ValueError, match=r"unknown argument\(s\) \['embed_dims'\]"):
        satlib.create_model("sat_tiny_convstem", embed_dims=64)
    with pytest.raises(ValueError, match="num_query_blocks=5 must be between 1 and depth=4"):
        tiny_sat(num_query_blocks=5)


def test_wrong_image_size_names_both_sizes(seeded):
    model = tiny_sat()
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\), got \(1, 3, 48, 48\)"):
        model(torch.randn(1, 3, 48, 48))


def test_loc_map_is_mean_of_query_block_masks(seeded):
    model = sharpen(tiny_sat(num_query_blocks=2))
    out = model(torch.randn(3, 3, 32, 32))
    torch.testing.assert_close(out.loc_map, out.masks[:, -2:].mean(dim=1))
    assert out.loc_map.min() >= 0 and out.loc_map.max() <= 1
    assert out.masks.std() > 0.05  # masks really vary, so the checks above mean something


def test_logits_are_pooled_class_maps(seeded):
    out = tiny_sat()(torch.randn(2, 3, 32, 32))
    torch.testing.assert_close(out.logits, out.class_maps.mean(dim=(2, 3)))


def replace_mask(model: SAT, block: int):
    """Hook that swaps one block's mask for a constant 0.3 (returns the hook handle)."""
    return model.blocks[block].attn.to_mask.register_forward_hook(lambda mod, inp, out: torch.full_like(out, 0.3))


@pytest.mark.parametrize("attn_impl", ["explicit", "sdpa"])
def test_only_query_blocks_multiply_attention_by_their_mask(seeded, attn_impl):
    model = sharpen(tiny_sat(depth=5, num_query_blocks=3, attn_impl=attn_impl)).eval()
    x = torch.randn(2, 3, 32, 32)
    base = model(x)
    for block in range(5):
        handle = replace_mask(model, block)
        out = model(x)
        handle.remove()
        assert (out.masks[:, block] - 0.3).abs().max() < 1e-6  # the hook took effect
        changed = (out.logits - base.logits).abs().max() > 1e-4
        assert changed == (block >= 2), f"block {block}: logits changed={changed}"


def test_paths_agree_forward_and_backward(seeded):
    explicit = sharpen(tiny_sat(attn_impl="explicit", depth=3, num_query_blocks=2))
    fused = copy.deepcopy(explicit)
    fused.set_attn_impl("sdpa")
    x, labels = torch.randn(3, 3, 32, 32), torch.tensor([0, 1, 4])
    loss_fn = SATLoss(area_thr=0.3)
    outs = []
    for model in (explicit, fused):
        out = model(x)
        loss_fn(out, labels)[0].backward()
        outs.append(out)
    for field, a, b in zip(SATOutput._fields, *outs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=field)
    for (name, a), b in zip(explicit.named_parameters(), fused.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_set_attn_impl_rejects_unknown():
    with pytest.raises(ValueError, match="attn_impl='xformers'"):
        tiny_sat().set_attn_impl("xformers")


def test_bf16_autocast_keeps_map_in_float32(seeded):
    model = sharpen(tiny_sat()).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
        for attn_impl in ("sdpa", "explicit"):
            model.set_attn_impl(attn_impl)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = model(x)
            assert out.loc_map.dtype == out.masks.dtype == torch.float32
            assert out.loc_map.min() >= 0 and out.loc_map.max() <= 1
            torch.testing.assert_close(out.loc_map, ref.loc_map, atol=0.03, rtol=0)


def test_init_follows_official(seeded):
    model = satlib.create_model("sat_deit_tiny_patch16_224", num_classes=10)
    # timm's trunc_normal_(std=.02) truncates at ±2 (absolute), so in effect a plain N(0, 0.02²)
    for name in ("loc_embed", "cls_token", "loc_token"):
        assert 0.005 < getattr(model, name).std() < 0.04, name
    assert model.pos_embed.std().item() == pytest.approx(0.02, rel=0.05)
    qkv = model.blocks[0].attn.qkv
    assert qkv.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert qkv.bias is not None and (qkv.bias == 0).all()
    assert (model.blocks[3].norm1.weight == 1).all() and model.norm.eps == 1e-6
    fan_in = 192 * 9  # PyTorch's default conv init: U(±1/sqrt(fan_in)) after kaiming_uniform(a=√5)
    assert model.head.weight.abs().max() <= fan_in ** -0.5
    assert model.head.weight.std() > 0.5 * fan_in ** -0.5 / 3 ** 0.5


def test_no_weight_decay_names_are_parameters():
    model = tiny_sat()
    names = dict(model.named_parameters())
    assert model.no_weight_decay() == {"pos_embed", "cls_token", "loc_embed", "loc_token"}
    assert model.no_weight_decay() <= set(names)


def test_drop_path_rises_over_blocks_and_trains(seeded):
    model = tiny_sat(drop_path_rate=0.2, drop_rate=0.1)
    assert isinstance(model.blocks[0].drop_path, torch.nn.Identity)
    assert model.blocks[-1].drop_path.drop_prob == pytest.approx(0.2)
    assert isinstance(model.blocks[1].drop_path, DropPath)
    model.train()
    assert model(torch.randn(2, 3, 32, 32)).logits.isfinite().all()


def test_reset_classifier(seeded):
    model = tiny_sat()
    model.reset_classifier(7)
    assert model(torch.randn(1, 3, 32, 32)).logits.shape == (1, 7) and model.num_classes == 7


@pytest.mark.gpu
def test_cuda_bf16_paths_agree_with_fp32():
    torch.manual_seed(0)
    model = sharpen(tiny_sat(img_size=64, patch_size=16, embed_dim=96, depth=4)).cuda().eval()
    x = torch.randn(4, 3, 64, 64, device="cuda")
    with torch.no_grad():
        model.set_attn_impl("explicit")
        ref = model(x)
        for attn_impl in ("sdpa", "explicit"):
            model.set_attn_impl(attn_impl)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                out = model(x)
            assert out.loc_map.dtype == torch.float32
            torch.testing.assert_close(out.loc_map, ref.loc_map, atol=0.03, rtol=0)
            torch.testing.assert_close(out.logits.float(), ref.logits, atol=0.1, rtol=0.05)
