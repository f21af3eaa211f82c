"""SAT on timm ViT backbones: the named architectures' structure, their checkpoints, the token layout,
the two attention paths, and the adopted modules computing exactly what timm computes."""

import copy

import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from timm.layers import resample_abs_pos_embed

import satlib
from satlib.models import ViTSAT, weights
from satlib.models.vit import ViTAttention

NEW = ["head.bias", "head.weight", "loc_embed", "loc_token"]  # what a backbone checkpoint never has


def randomized(state: dict, gen: torch.Generator) -> dict:
    """Random weights in a state dict's shapes: norms and layer scales near 1, the rest small, so that
    a tensor loaded in the wrong place (or not at all) changes the output."""
    out = {}
    for key, value in state.items():
        noise = torch.randn(value.shape, generator=gen)
        near_one = key.endswith(("norm.weight", "norm1.weight", "norm2.weight", "norm_pre.weight", ".gamma"))
        out[key] = 1 + 0.1 * noise if near_one else 0.05 * noise
    return out


def timm_backbone(name: str, gen: torch.Generator, **kwargs) -> torch.nn.Module:
    """A timm model of that name with random weights (its classifier included, as timm saves it)."""
    model = timm.create_model(name, pretrained=False, **kwargs)
    model.load_state_dict(randomized(model.state_dict(), gen))
    return model.eval()


def assert_backbone_loaded(model, source: dict, skip=("pos_embed",)):
    state = model.state_dict()
    for key, value in source.items():
        if key.startswith(("head.", "fc_norm.")) or key in skip:
            continue
        assert torch.equal(state[key], value), key


def test_deit3_small_structure_and_checkpoint(seeded, tmp_path):
    """DeiT-III: layer scale, and position embeddings for the patches only (no_embed_class)."""
    source = timm_backbone("deit3_small_patch16_224", seeded, depth=3, img_size=64)
    save_file(source.state_dict(), str(tmp_path / "deit3.safetensors"))
    model = satlib.create_model("sat_deit3_small_patch16_224", num_classes=7, depth=3, img_size=64,
                                pretrained=tmp_path / "deit3.safetensors").eval()
    assert isinstance(model, ViTSAT) and model.embed_dim == 384 and model.no_embed_class
    assert model.grid_size == (4, 4) and model.pos_embed.shape == (1, 16, 384)  # no slot for the cls token
    assert sorted(model.load_report.missing) == NEW and model.load_report.dropped == ["head.bias", "head.weight"]
    assert_backbone_loaded(model, source.state_dict(), skip=())
    assert {k for k in model.state_dict() if k not in NEW} == {k for k in source.state_dict() if "head" not in k}
    assert model.blocks[0].ls1.gamma.shape == (384,)
    out = model(torch.randn(2, 3, 64, 64))
    assert out.logits.shape == (2, 7) and out.loc_map.shape == (2, 4, 4) and out.masks.shape == (2, 3, 4, 4)


def test_dinov2_registers_saved_at_518_load_at_224(seeded, tmp_path):
    source = timm_backbone("vit_small_patch14_reg4_dinov2", seeded, depth=2)  # img_size 518: a 37×37 grid
    assert source.pos_embed.shape == (1, 37 * 37, 384)
    torch.save({"model": source.state_dict()}, tmp_path / "dinov2.pth")
    model = satlib.create_model("sat_vit_small_patch14_reg4_dinov2", num_classes=5, depth=2, num_query_blocks=2,
                                img_size=224, pretrained=tmp_path / "dinov2.pth").eval()
    assert model.grid_size == (16, 16) and model.num_prefix_tokens == 5 and model.num_reg_tokens == 4
    assert sorted(model.load_report.missing) == NEW and model.load_report.dropped == []  # DINOv2 has no classifier
    expected = resample_abs_pos_embed(source.pos_embed.detach(), new_size=[16, 16], old_size=[37, 37],
                                      num_prefix_tokens=0)
    torch.testing.assert_close(model.pos_embed.detach(), expected)
    assert_backbone_loaded(model, source.state_dict())
    assert torch.equal(model.reg_token, source.reg_token)


def test_clip_pre_norm_structure_and_checkpoint(seeded, tmp_path):
    """CLIP: a LayerNorm before the blocks (norm_pre), no patch-embedding bias, a projection head dropped."""
    source = timm_backbone("vit_base_patch32_clip_224", seeded, depth=2)
    save_file(source.state_dict(), str(tmp_path / "clip.safetensors"))
    model = satlib.create_model("sat_vit_base_patch32_clip_224", num_classes=3, depth=2, num_query_blocks=1,
                                img_size=224, pretrained=tmp_path / "clip.safetensors").eval()
    assert model.grid_size == (7, 7) and model.patch_embed.proj.bias is None
    assert torch.equal(model.norm_pre.weight, source.norm_pre.weight)
    assert sorted(model.load_report.missing) == NEW and model.load_report.dropped == ["head.bias", "head.weight"]
    assert_backbone_loaded(model, source.state_dict(), skip=())


@pytest.mark.parametrize("name, kwargs", [
    ("deit3_small_patch16_224", dict(depth=2, img_size=64)),
    ("vit_small_patch14_reg4_dinov2", dict(depth=2, img_size=56)),
    ("vit_base_patch32_clip_224", dict(depth=2, img_size=64)),
    ("vit_small_patch16_224", dict(depth=2, img_size=64, qk_norm=True, init_values=0.5)),
])
def test_adopted_backbone_computes_what_timm_computes(seeded, name, kwargs):
    """Without the loc token (the CAM network) the adopted modules give timm's own tokens exactly:
    prefix tokens, position embeddings, pre-norm, qk-norm, layer scale and final norm all as timm has them."""
    source = timm_backbone(name, seeded, num_classes=0, global_pool="", fc_norm=False, **kwargs)
    model = satlib.create_model(f"cam_{name}", num_classes=3, num_query_blocks=1, **kwargs).eval()
    model.load_state_dict({**source.state_dict(), **{k: v for k, v in model.state_dict().items() if "head" in k}})
    x = torch.randn(2, 3, kwargs["img_size"], kwargs["img_size"])
    with torch.no_grad():
        tokens, _ = model.forward_features(x)
        torch.testing.assert_close(tokens, source.forward_features(x), rtol=1e-5, atol=1e-5)


def test_mask_grid_leaves_out_every_prefix_token(seeded):
    """A mask over keys [cls, 4 registers, 16 patches, loc]: the grid is the 16 patch entries, in order."""
    model = satlib.create_model("sat_vit_small_patch14_reg4_dinov2", num_classes=2, depth=2, num_query_blocks=1,
                                img_size=56, embed_dim=48, num_heads=3).eval()
    keys = 1 + 4 + 16 + 1
    pattern = torch.arange(keys, dtype=torch.float32) / keys
    model.blocks[1].attn.read.register_forward_hook(lambda mod, inp, out: pattern.expand_as(out))
    out = model(torch.randn(2, 3, 56, 56))
    torch.testing.assert_close(out.masks[:, 1], pattern[5:21].reshape(1, 4, 4).expand(2, 4, 4))
    torch.testing.assert_close(out.loc_map, out.masks[:, 1])


def reference_attention(attn: ViTAttention, x: torch.Tensor):
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
def test_attention_matches_timm_and_the_reference(seeded, attn_impl):
    timm_attn = timm.create_model("vit_small_patch16_224", depth=1, embed_dim=24, num_heads=3, qk_norm=True,
                                  img_size=32).blocks[0].attn.eval()
    torch.nn.init.normal_(timm_attn.qkv.weight, std=0.5)
    x = torch.randn(2, 7, 24)
    plain = ViTAttention(timm_attn, row="loc", apply_mask=False, attn_impl=attn_impl)
    torch.testing.assert_close(plain(x)[0], timm_attn(x), rtol=1e-5, atol=1e-6)  # unmasked: timm's output
    masked = ViTAttention(timm_attn, row="loc", apply_mask=True, attn_impl=attn_impl)
    out, mask = masked(x)
    ref_out, ref_mask = reference_attention(masked, x)
    torch.testing.assert_close(mask, ref_mask, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-6)
    assert (out - plain(x)[0]).abs().max() > 1e-3  # the mask changes the output


@pytest.mark.parametrize("method", ["sat", "tscam"])
def test_explicit_and_fused_paths_agree_on_a_generic_backbone(seeded, method):
    explicit = satlib.create_model(f"{method}_vit_small_patch14_reg4_dinov2", num_classes=4, depth=3,
                                   num_query_blocks=2, img_size=56, embed_dim=48, num_heads=3, qk_norm=True,
                                   init_values=0.5, attn_impl="explicit")
    with torch.no_grad():
        for block in explicit.blocks:
            block.attn.qkv.weight.normal_(std=0.3)  # masks far from 0.5
        explicit.cls_token.normal_(std=0.02)  # timm starts them at std 1e-6, where LayerNorm's gradient explodes
        explicit.reg_token.normal_(std=0.02)
    fused = copy.deepcopy(explicit)
    fused.set_attn_impl("sdpa")
    x, labels = torch.randn(3, 3, 56, 56), torch.tensor([0, 1, 3])
    outs = []
    for model in (explicit, fused):
        out = model(x)
        (F.cross_entropy(out.logits, labels) + out.loc_map.mean() + out.masks.std()).backward()
        outs.append(out)
    assert outs[0].masks.std() > 0.01
    for field, a, b in zip(outs[0]._fields, *outs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=field)
    for (name, a), b in zip(explicit.named_parameters(), fused.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_only_query_blocks_multiply_attention_by_their_mask(seeded):
    model = satlib.create_model("sat_deit3_small_patch16_224", num_classes=3, depth=4, num_query_blocks=2,
                                img_size=32, embed_dim=48, num_heads=3, init_values=1.0).eval()
    assert [b.attn.apply_mask for b in model.blocks] == [False, False, True, True]
    assert [b.attn.row for b in model.blocks] == ["loc"] * 4


def test_unsupported_backbones_are_named():
    with pytest.raises(ValueError, match="unknown model 'sat_resnet_huge'"):
        satlib.create_model("sat_resnet_huge")
    with pytest.raises(ValueError, match="resnet18: timm builds it in timm.models.resnet, not as a VisionTransformer"):
        satlib.create_model("sat_resnet18")
    with pytest.raises(ValueError, match="deit_tiny_distilled_patch16_224: timm cannot build it as a backbone "
                                         ".* distilled head reads the class and distillation tokens"):
        satlib.create_model("sat_deit_tiny_distilled_patch16_224", img_size=32)
    with pytest.raises(ValueError, match="vit_small_patch16_224: timm cannot build it .*'stem_widths'"):
        satlib.create_model("sat_vit_small_patch16_224", stem_widths=(8, 16))
    with pytest.raises(ValueError, match="TS-CAM reads the cls token's attention"):
        satlib.create_model("tscam_vit_small_patch16_224", class_token=False, img_size=32, depth=3)


def test_named_sat_variants_stay_the_official_class():
    assert type(satlib.create_model("sat_deit_tiny_patch16_224", img_size=32)) is satlib.SAT
    assert type(satlib.create_model("sat_tiny_convstem")) is satlib.SAT


def test_pretrained_true_offline_names_the_hub_file(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(weights, "_reachable", weights._reachable)  # the real probe: it must read the switch
    with pytest.raises(FileNotFoundError) as error:
        satlib.create_model("sat_vit_small_patch14_reg4_dinov2", pretrained=True, cache_dir=tmp_path, depth=1,
                            num_query_blocks=1, img_size=56)
    message = str(error.value)
    assert "https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_reg4_pretrain.pth" in message
    assert "model.safetensors from https://huggingface.co/timm/vit_small_patch14_reg4_dinov2.lvd142m" in message
    assert "pretrained='path/to/file'" in message


def test_pretrained_true_reads_timms_hub_name_from_the_cache(seeded, tmp_path, monkeypatch):
    monkeypatch.setattr(weights, "_reachable", lambda url, timeout=3.0: pytest.fail("no network wanted"))
    source = timm_backbone("deit3_small_patch16_224", seeded, depth=2, img_size=32)
    repo = tmp_path / "models--timm--deit3_small_patch16_224.fb_in1k"  # the Hugging Face cache layout
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abc")
    (repo / "snapshots" / "0123abc").mkdir(parents=True)
    save_file(source.state_dict(), str(repo / "snapshots" / "0123abc" / "model.safetensors"))
    model = satlib.create_model("sat_deit3_small_patch16_224", pretrained=True, cache_dir=tmp_path, depth=2,
                                num_query_blocks=1, img_size=32, num_classes=2)
    assert torch.equal(model.blocks[1].ls2.gamma, source.blocks[1].ls2.gamma)
    assert model.pretrained_cfg["hf_hub_id"] == "timm/deit3_small_patch16_224.fb_in1k"


def test_fc_norm_backbone_loads_its_norm_over_the_tokens(seeded):
    """EVA-style backbones pool through fc_norm and have no final norm: fc_norm becomes the token norm."""
    source = timm_backbone("eva_large_patch14_196", seeded, depth=1, embed_dim=32, num_heads=2, img_size=28)
    assert "fc_norm.weight" in source.state_dict() and "norm.weight" not in source.state_dict()
    model = satlib.create_model("sat_eva_large_patch14_196", num_classes=2, depth=1, embed_dim=32, num_heads=2,
                                num_query_blocks=1, img_size=28)
    report = satlib.load_pretrained(model, source.state_dict())
    assert torch.equal(model.norm.weight, source.fc_norm.weight)
    assert sorted(report.missing) == NEW and report.dropped == ["head.bias", "head.weight"]


@pytest.mark.parametrize("name", ["sat_deit3_small_patch16_224", "cam_deit3_small_patch16_224"])
def test_a_whole_trained_model_reloads_head_included(seeded, tmp_path, name):
    """A satlib checkpoint (loc token, or a conv head) is a whole model: nothing dropped, nothing new."""
    args = dict(num_classes=3, depth=2, num_query_blocks=1, img_size=32, embed_dim=48, num_heads=3)
    source = satlib.create_model(name, **args).eval()
    torch.save({"model": source.state_dict()}, tmp_path / "trained.pth")
    target = satlib.create_model(name, pretrained=tmp_path / "trained.pth", **args).eval()
    assert target.load_report == ([], [], [])
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(target(x).logits, source(x).logits, rtol=0, atol=0)


def test_bf16_autocast_keeps_the_generic_map_in_float32(seeded):
    model = satlib.create_model("sat_vit_small_patch14_reg4_dinov2", num_classes=3, depth=2, num_query_blocks=2,
                                img_size=28, embed_dim=48, num_heads=3).eval()
    x = torch.randn(2, 3, 28, 28)
    with torch.no_grad():
        reference = model(x)
        for attn_impl in ("sdpa", "explicit"):
            model.set_attn_impl(attn_impl)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = model(x)
            assert out.loc_map.dtype == out.masks.dtype == torch.float32
            torch.testing.assert_close(out.loc_map, reference.loc_map, atol=0.03, rtol=0)


@pytest.mark.gpu
def test_cuda_bf16_generic_paths_agree_with_fp32():
    torch.manual_seed(0)
    model = satlib.create_model("sat_vit_small_patch14_reg4_dinov2", num_classes=3, depth=4, img_size=56,
                                embed_dim=96, num_heads=4, qk_norm=True).cuda().eval()
    x = torch.randn(4, 3, 56, 56, device="cuda")
    with torch.no_grad():
        model.set_attn_impl("explicit")
        reference = model(x)
        for attn_impl in ("sdpa", "explicit"):
            model.set_attn_impl(attn_impl)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                out = model(x)
            assert out.loc_map.dtype == torch.float32
            torch.testing.assert_close(out.loc_map, reference.loc_map, atol=0.03, rtol=0)
            torch.testing.assert_close(out.logits.float(), reference.logits, atol=0.1, rtol=0.05)
