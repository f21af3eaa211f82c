"""The CAM and TS-CAM baselines: their maps by hand, their loss, their scoring, and a training run each."""

import pytest
import torch
import torch.nn.functional as F

import satlib
from satlib.config import load_config
from satlib.evaluate import scored_maps
from satlib.losses import ClassificationLoss, SATLoss, build_loss
from satlib.models import CAM, TSCAM

TINY_VIT = dict(img_size=32, patch_size=8, embed_dim=24, depth=2, num_heads=3)  # a 4×4 grid


def tiny(name: str, **kwargs):
    return satlib.create_model(name, num_classes=5, num_query_blocks=1, **{**TINY_VIT, **kwargs}).eval()


def sharpen(model):
    with torch.no_grad():
        for block in model.blocks:
            block.attn.qkv.weight.normal_(std=0.5)  # attention far from uniform
        model.cls_token.normal_(std=0.5)
    return model


def tscam_by_hand(model: TSCAM, x: torch.Tensor):
    """TS-CAM on a plain DeiT, read straight from the weights: each block's cls attention to the patches
    (softmax row 0, keys 1:, mean over heads), summed over blocks, times the conv head's class maps."""
    B, heads, D = x.shape[0], model.blocks[0].attn.num_heads, model.embed_dim
    t = F.conv2d(x, model.patch_embed.proj.weight, model.patch_embed.proj.bias, stride=8).flatten(2).transpose(1, 2)
    t = torch.cat([model.cls_token.expand(B, -1, -1), t], dim=1) + model.pos_embed
    rows = []
    for block in model.blocks:
        h = F.layer_norm(t, (D,), block.norm1.weight, block.norm1.bias, eps=1e-6)
        q, k, v = F.linear(h, block.attn.qkv.weight, block.attn.qkv.bias).reshape(B, -1, 3, heads, D // heads) \
            .permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * (D // heads) ** -0.5).softmax(dim=-1)
        rows.append(attn[:, :, 0, 1:].mean(dim=1))
        t = t + F.linear((attn @ v).transpose(1, 2).reshape(B, -1, D), block.attn.proj.weight, block.attn.proj.bias)
        h = F.layer_norm(t, (D,), block.norm2.weight, block.norm2.bias, eps=1e-6)
        t = t + F.linear(F.gelu(F.linear(h, block.mlp.fc1.weight, block.mlp.fc1.bias)),
                         block.mlp.fc2.weight, block.mlp.fc2.bias)
    t = F.layer_norm(t, (D,), model.norm.weight, model.norm.bias, eps=1e-6)
    class_maps = F.conv2d(t[:, 1:].transpose(1, 2).reshape(B, D, 4, 4), model.head.weight, model.head.bias, padding=1)
    attention = torch.stack(rows).sum(dim=0).reshape(B, 1, 4, 4)
    return attention * class_maps, class_maps.mean(dim=(2, 3))


@pytest.mark.parametrize("attn_impl", ["explicit", "sdpa"])
def test_tscam_map_equals_a_computation_by_hand(seeded, attn_impl):
    model = sharpen(tiny("tscam_deit_tiny_patch16_224", attn_impl=attn_impl))
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        out = model(x)
        maps, logits = tscam_by_hand(model, x)
    torch.testing.assert_close(out.logits, logits, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.class_loc_maps, maps, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.loc_map, maps[torch.arange(3), logits.argmax(-1)], rtol=1e-4, atol=1e-5)
    assert out.masks.shape == (3, 2, 4, 4) and (out.masks.sum(dim=(2, 3)) < 1).all()  # the cls share is left out
    assert out.masks.std() > 0.01  # the attention is far from uniform, so the check means something


def test_cam_map_is_the_predicted_class_map(seeded):
    model = tiny("cam_deit_tiny_patch16_224")
    out = model(torch.randn(2, 3, 32, 32))
    assert isinstance(model, CAM) and out.masks.shape == (2, 0, 4, 4)
    torch.testing.assert_close(out.class_loc_maps, out.class_maps)
    torch.testing.assert_close(out.loc_map, out.class_maps[torch.arange(2), out.logits.argmax(-1)])
    torch.testing.assert_close(out.logits, out.class_maps.mean(dim=(2, 3)))


def test_evaluator_scores_the_ground_truth_class_map(seeded):
    out = tiny("tscam_deit_tiny_patch16_224")(torch.randn(3, 3, 32, 32))
    labels = torch.tensor([4, 0, 2])
    torch.testing.assert_close(scored_maps(out, labels), out.class_loc_maps[torch.arange(3), labels])
    sat = satlib.create_model("sat_tiny_convstem", num_classes=5, img_size=32)(torch.randn(3, 3, 32, 32))
    assert scored_maps(sat, labels) is sat.loc_map  # SAT's map is the same for every class


def test_loss_follows_the_method(seeded):
    assert isinstance(build_loss("sat", area_thr=0.3), SATLoss) and build_loss("sat", area_thr=0.3).area_thr == 0.3
    assert isinstance(build_loss("cam"), ClassificationLoss) and isinstance(build_loss("tscam"), ClassificationLoss)
    with pytest.raises(ValueError, match="no training loss for method 'gradcam'"):
        build_loss("gradcam")
    out = tiny("cam_deit_tiny_patch16_224")(torch.randn(2, 3, 32, 32))
    labels = torch.tensor([1, 3])
    total, terms = build_loss("cam")(out, labels, constraint_weight=0.5)
    torch.testing.assert_close(total, F.cross_entropy(out.logits, labels))
    assert terms["area"] == 0 and terms["norm"] == 0


@pytest.mark.trains
@pytest.mark.parametrize("name", ["cam_tiny_convstem", "tscam_tiny_convstem"])
def test_a_baseline_trains_and_evaluates_through_the_loop(tiny_config, name):
    from satlib.build import load
    from satlib.train import train

    config = tiny_config(**{"model.name": name, "train.epochs": 1})
    record = train(config, progress=False)
    assert record["loss_area"] == 0 and record["loss_norm"] == 0 and record["loss"] == record["loss_cls"]
    assert 0 <= record["gt_known"] <= 100 and "cam_gt_known" in record
    model, info = load(f"{config.train.out}/checkpoint.pt")
    assert model.method == name.split("_")[0] and info.name == info.config.model.name == name


@pytest.mark.trains
def test_satlib_train_takes_a_baseline_by_model_flag(tiny_data, tmp_path):
    from satlib.cli import main

    from tiny_recipe import tiny_overrides

    overrides = [o for o in tiny_overrides(tiny_data, tmp_path / "run", **{"train.epochs": 1})
                 if not o.startswith("model.name=")]
    assert main(["train", "--config", "synthetic_cpu", "--model", "cam_tiny_convstem", "--quiet", *overrides]) == 0
    assert load_config(tmp_path / "run" / "config.yaml").model.name == "cam_tiny_convstem"


def test_conv_stem_baselines_start_as_sat_does(seeded):
    """Same parameter names and initial distributions as sat_tiny_convstem, the loc token aside."""
    sat = satlib.create_model("sat_tiny_convstem", num_classes=3)
    cam = satlib.create_model("cam_tiny_convstem", num_classes=3)
    sat_params, cam_params = dict(sat.named_parameters()), dict(cam.named_parameters())
    assert set(sat_params) - set(cam_params) == {"loc_token", "loc_embed"} and set(cam_params) <= set(sat_params)
    for name, param in cam_params.items():
        reference = sat_params[name]
        assert param.shape == reference.shape, name
        if param.numel() >= 64:  # enough values for the spread to say which init drew them (5 standard errors)
            spread, n = reference.std().item(), param.numel()
            assert abs(param.std().item() - spread) <= 5 * spread / (2 * n) ** 0.5 + 1e-6, name
            assert abs(param.mean().item() - reference.mean().item()) <= 5 * spread * (2 / n) ** 0.5 + 1e-6, name
