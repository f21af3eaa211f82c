"""SAT on every kind of backbone it runs on, one parametrized set: the official DeiT, the conv stem, and
timm ViTs with what DeiT lacks (registers, qk-norm, layer scale, position embeddings without the cls
slot). The token layout, the maps, the two attention paths, initialisation, dropout, autocast."""

import copy

import pytest
import timm
import torch
import torch.nn.functional as F
from timm.layers import DropPath

import satlib
from satlib import SAT, SATOutput
from satlib.losses import build_loss
from satlib.models.backbones import create_backbone

# name -> small architecture arguments (img_size, widths, depth) and the patch grid they give
BACKBONES = {
    "deit": ("sat_deit_tiny_patch16_224", dict(img_size=32, patch_size=8, embed_dim=48, depth=4, num_heads=3)),
    "convstem": ("sat_tiny_convstem", dict(img_size=32, stem_widths=(8, 16), embed_dim=48, depth=4, num_heads=3)),
    "dinov2_reg": ("sat_vit_small_patch14_reg4_dinov2", dict(img_size=28, embed_dim=48, depth=4, num_heads=3,
                                                             qk_norm=True, init_values=0.5)),
}
GRIDS = {"deit": (4, 4), "convstem": (8, 8), "dinov2_reg": (2, 2)}


def tiny(backbone: str, method: str = "sat", **kwargs):
    name, args = BACKBONES[backbone]
    return satlib.create_model(name.replace("sat_", f"{method}_", 1), num_classes=5, **{**args, **kwargs})


def images(model, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, *model.img_size)


def sharpen(model):
    """Larger qkv weights so the masks are far from 0.5 and the two paths are really exercised."""
    with torch.no_grad():
        for block in model.blocks:
            block.attn.qkv.weight.normal_(std=0.3)
    return model


@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.slow) if "_base_" in name or "_small_" in name
                                  else name for name in satlib.list_models()])  # DeiT-S/B: seconds each on 2 cores
def test_every_named_model_runs_forward_and_backward(seeded, name):
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


@pytest.mark.parametrize("backbone", BACKBONES)
def test_token_layout_and_grid(seeded, backbone):
    """[prefix tokens..., patches..., loc]: the loc token, with its own position embedding, comes last."""
    model = tiny(backbone).eval()
    assert isinstance(model, SAT) and model.grid_size == GRIDS[backbone]
    x = images(model)
    with torch.no_grad():
        tokens = model._pos_embed(model.patch_embed(x))
    assert tokens.shape[1] == model.num_prefix_tokens + model.num_patches + 1
    torch.testing.assert_close(tokens[:, -1], (model.loc_token + model.loc_embed)[:, 0].expand(2, -1))


def test_deit_tokens_are_the_official_sum(seeded):
    """The official SAT: cat([cls, patches, loc]) + cat([pos_embed, loc_embed])."""
    model = tiny("deit").eval()
    patches = model.patch_embed(images(model))
    cls, loc = model.cls_token.expand(2, -1, -1), model.loc_token.expand(2, -1, -1)
    official = torch.cat([cls, patches, loc], dim=1) + torch.cat([model.pos_embed, model.loc_embed], dim=1)
    assert torch.equal(model._pos_embed(patches), official)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_position_dropout_covers_the_loc_token(seeded, backbone):
    """As the official SAT: dropout after the position embedding, on every token, the loc token's included."""
    model = tiny(backbone, drop_rate=0.5).train()
    seen = []
    model.pos_drop.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[1]))
    model(images(model))
    assert seen == [model.num_prefix_tokens + model.num_patches + 1]


@pytest.mark.parametrize("backbone", BACKBONES)
def test_loc_map_is_mean_of_query_block_masks(seeded, backbone):
    model = sharpen(tiny(backbone, num_query_blocks=2))
    out = model(images(model, 3))
    torch.testing.assert_close(out.loc_map, out.masks[:, -2:].mean(dim=1))
    assert out.loc_map.min() >= 0 and out.loc_map.max() <= 1
    assert out.masks.std() > 0.05  # masks really vary, so the checks above mean something


@pytest.mark.parametrize("backbone", BACKBONES)
def test_logits_are_pooled_class_maps(seeded, backbone):
    model = tiny(backbone)
    out = model(images(model))
    torch.testing.assert_close(out.logits, out.class_maps.mean(dim=(2, 3)))


def test_mask_grid_leaves_out_every_prefix_token(seeded):
    """A mask over keys [cls, 4 registers, 4 patches, loc]: the grid is the 4 patch entries, in order."""
    model = tiny("dinov2_reg", num_query_blocks=1).eval()
    keys = 1 + 4 + 4 + 1
    pattern = torch.arange(keys, dtype=torch.float32) / keys
    model.blocks[3].attn.to_row.register_forward_hook(lambda mod, inp, out: pattern.expand_as(out))
    out = model(images(model))
    torch.testing.assert_close(out.masks[:, 3], pattern[5:9].reshape(1, 2, 2).expand(2, 2, 2))
    torch.testing.assert_close(out.loc_map, out.masks[:, 3])


@pytest.mark.parametrize("attn_impl", ["explicit", "sdpa"])
@pytest.mark.parametrize("backbone", BACKBONES)
def test_only_query_blocks_multiply_attention_by_their_mask(seeded, backbone, attn_impl):
    model = sharpen(tiny(backbone, depth=5, num_query_blocks=3, attn_impl=attn_impl)).eval()
    assert [b.attn.apply_mask for b in model.blocks] == [False, False, True, True, True]
    x = images(model)
    base = model(x)
    for block in range(5):
        hook = model.blocks[block].attn.to_row.register_forward_hook(lambda m, i, out: torch.full_like(out, 0.3))
        out = model(x)
        hook.remove()
        assert (out.masks[:, block] - 0.3).abs().max() < 1e-6  # the hook took effect
        changed = (out.logits - base.logits).abs().max() > 1e-4
        assert changed == (block >= 2), f"block {block}: logits changed={changed}"


@pytest.mark.parametrize("method", ["sat", "tscam"])
@pytest.mark.parametrize("backbone", BACKBONES)
def test_paths_agree_forward_and_backward(seeded, backbone, method):
    explicit = sharpen(tiny(backbone, method, depth=3, num_query_blocks=2, attn_impl="explicit"))
    fused = copy.deepcopy(explicit)
    fused.set_attn_impl("sdpa")
    x, labels = images(explicit, 3), torch.tensor([0, 1, 4])
    outs = []
    for model in (explicit, fused):
        out = model(x)
        (F.cross_entropy(out.logits, labels) + out.loc_map.mean() + out.masks.std()).backward()
        outs.append(out)
    assert outs[0].masks.std() > 0.01
    for field, a, b in zip(SATOutput._fields, *outs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=field)
    for (name, a), b in zip(explicit.named_parameters(), fused.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_bf16_autocast_keeps_map_in_float32(seeded, backbone):
    model = sharpen(tiny(backbone)).eval()
    x = images(model)
    with torch.no_grad():
        ref = model(x)
        for attn_impl in ("sdpa", "explicit"):
            model.set_attn_impl(attn_impl)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = model(x)
            assert out.loc_map.dtype == out.masks.dtype == torch.float32
            assert out.loc_map.min() >= 0 and out.loc_map.max() <= 1
            torch.testing.assert_close(out.loc_map, ref.loc_map, atol=0.03, rtol=0)


@pytest.mark.parametrize("name, kwargs", [
    ("deit_small_patch16_224", dict(depth=2, img_size=64)),
    ("deit3_small_patch16_224", dict(depth=2, img_size=64)),
    ("vit_small_patch14_reg4_dinov2", dict(depth=2, img_size=56)),
    ("vit_base_patch32_clip_224", dict(depth=2, img_size=64)),
    ("vit_small_patch16_224", dict(depth=2, img_size=64, qk_norm=True, init_values=0.5)),
    ("tiny_convstem", dict(depth=2, img_size=32, stem_widths=(8, 16), embed_dim=32, num_heads=2)),
])
def test_adopted_backbone_computes_what_timm_computes(seeded, name, kwargs):
    """Without the loc token (the CAM network) the adopted modules give the backbone's own tokens exactly:
    prefix tokens, position embeddings, pre-norm, qk-norm, layer scale and final norm all as timm has them."""
    source = create_backbone(name, **kwargs).eval()
    with torch.no_grad():
        for param in source.parameters():
            param.add_(torch.randn_like(param), alpha=0.05)  # no weight left at its init (zero biases, unit norms)
    model = satlib.create_model(f"cam_{name}", num_classes=3, num_query_blocks=1, **kwargs).eval()
    model.load_state_dict({**source.state_dict(), **{k: v for k, v in model.state_dict().items() if "head" in k}})
    x = torch.randn(2, 3, kwargs["img_size"], kwargs["img_size"])
    with torch.no_grad():
        tokens, _ = model.forward_features(x)
        torch.testing.assert_close(tokens, source.forward_features(x), rtol=1e-5, atol=1e-5)


def test_wrong_image_size_names_both_sizes(seeded):
    model = tiny("deit")
    with pytest.raises(ValueError, match=r"SAT expects images of shape \(B, 3, 32, 32\), got \(1, 3, 48, 48\)"):
        model(torch.randn(1, 3, 48, 48))


def test_set_attn_impl_rejects_unknown():
    with pytest.raises(ValueError, match="attn_impl='xformers'"):
        tiny("deit").set_attn_impl("xformers")


@pytest.mark.parametrize("backbone", BACKBONES)
def test_init_follows_official(seeded, backbone):
    """trunc_normal(.02) tokens, position embeddings and Linears, zero biases, LayerNorm 1/0, eps 1e-6."""
    model = tiny(backbone, embed_dim=192, num_heads=3)
    # timm's trunc_normal_(std=.02) truncates at ±2 (absolute), so in effect a plain N(0, 0.02²)
    tokens = [model.loc_embed, model.cls_token, model.loc_token] + ([model.reg_token] if model.num_reg_tokens else [])
    for token in tokens:
        assert 0.005 < token.std() < 0.04
    assert model.pos_embed.std().item() == pytest.approx(0.02, rel=0.15)
    qkv = model.blocks[0].attn.qkv
    assert qkv.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert qkv.bias is not None and (qkv.bias == 0).all()
    assert (model.blocks[3].norm1.weight == 1).all() and model.norm.eps == 1e-6
    fan_in = 192 * 9  # PyTorch's default conv init: U(±1/sqrt(fan_in)) after kaiming_uniform(a=√5)
    assert model.head.weight.abs().max() <= fan_in ** -0.5
    assert model.head.weight.std() > 0.5 * fan_in ** -0.5 / 3 ** 0.5


@pytest.mark.parametrize("backbone", BACKBONES)
def test_no_weight_decay_names_are_the_tokens_and_embeddings(backbone):
    model = tiny(backbone)
    expected = {"pos_embed", "cls_token", "loc_embed", "loc_token"} | ({"reg_token"} if model.num_reg_tokens else set())
    assert model.no_weight_decay() == expected and expected <= dict(model.named_parameters()).keys()


def test_drop_path_rises_over_blocks_and_trains(seeded):
    model = tiny("deit", drop_path_rate=0.2, drop_rate=0.1)
    assert isinstance(model.blocks[0].drop_path1, torch.nn.Identity)
    assert model.blocks[-1].drop_path1.drop_prob == pytest.approx(0.2)
    assert isinstance(model.blocks[1].drop_path2, DropPath)
    assert model.blocks[0].attn.proj_drop.p == model.blocks[0].mlp.drop2.p == model.pos_drop.p == 0.1
    model.train()
    assert model(images(model)).logits.isfinite().all()


def test_reset_classifier(seeded):
    model = tiny("convstem")
    model.reset_classifier(7)
    assert model(images(model, 1)).logits.shape == (1, 7) and model.num_classes == 7


def test_variant_sizes_match_deit():
    for name, (width, heads) in {"tiny": (192, 3), "small": (384, 6), "base": (768, 12)}.items():
        args = satlib.models.VARIANTS[f"sat_deit_{name}_patch16_224"]
        assert (args["embed_dim"], args["num_heads"], args["depth"], args["patch_size"]) == (width, heads, 12, 16)


def test_timm_create_model_finds_satlib_names(seeded):
    model = timm.create_model("sat_tiny_convstem", num_classes=4)
    assert type(model) is SAT and model.grid_size == (12, 12)
    assert model.pretrained_cfg["input_size"] == (3, 96, 96)
    assert {name for name in satlib.list_models() if name.startswith("sat_")} <= set(timm.list_models("sat_*"))
    deit = timm.create_model("sat_deit_small_patch16_224", num_classes=2, img_size=64)
    assert type(deit) is SAT and deit.pretrained_cfg["hf_hub_id"] == "timm/deit_small_patch16_224.fb_in1k"


def test_convstem_is_configured_by_kwargs(seeded):
    model = satlib.create_model("sat_tiny_convstem", num_classes=6, img_size=64, embed_dim=32, depth=3,
                                num_heads=2, stem_widths=(8, 16), num_query_blocks=2, mlp_ratio=2.0)
    assert model.grid_size == (16, 16) and model.embed_dim == 32 and len(model.blocks) == 3
    assert [b.attn.apply_mask for b in model.blocks] == [False, True, True]
    assert model.blocks[0].mlp.fc1.out_features == 64 and model.patch_embed.stem[0][1].num_features == 8
    out = model(torch.randn(1, 3, 64, 64))
    assert out.loc_map.shape == (1, 16, 16) and out.logits.shape == (1, 6)


@pytest.mark.gpu
@pytest.mark.parametrize("backbone", BACKBONES)
def test_cuda_bf16_paths_agree_with_fp32(backbone):
    torch.manual_seed(0)
    model = sharpen(tiny(backbone)).cuda().eval()
    x = images(model, 4).cuda()
    with torch.no_grad():
        model.set_attn_impl("explicit")
        ref = model(x)
        for attn_impl in ("sdpa", "explicit"):
            model.set_attn_impl(attn_impl)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                out = model(x)
            assert out.loc_map.dtype == torch.float32
            assert not torch.equal(out.logits.float(), ref.logits)  # CUDA autocast really ran the model in bf16
            torch.testing.assert_close(out.loc_map, ref.loc_map, atol=0.03, rtol=0)
            torch.testing.assert_close(out.logits.float(), ref.logits, atol=0.1, rtol=0.05)
