"""Weights into SAT: the official checkpoint gives the official outputs and gradients, DeiT and other timm ViT
backbones load (converted, resampled, classifier dropped), satlib checkpoints reload, `pretrained=True`."""

import logging
import math

import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from timm.layers import resample_abs_pos_embed

import satlib
from satlib import SAT, convert_official_checkpoint, gaussian_kernel, load_pretrained
from satlib.models import checkpoint_filter_fn, weights

# A small model in the official layout: depth 12, so the official `cur_depth >= 9` rule applies as written.
D, HEADS, DEPTH, CLASSES, PATCH, GRID = 48, 3, 12, 5, 16, 4


def official_kernel() -> torch.Tensor:
    """get_kernel(kernlen=3, nsig=6) of the official code, written with math.erf, (1, 1, 3, 3)."""
    size, nsig = 3, 6
    interval = (2 * nsig + 1) / size
    edges = [-nsig - interval / 2 + i * (2 * nsig + interval) / size for i in range(size + 1)]
    cdf = [0.5 * (1 + math.erf(e / math.sqrt(2))) for e in edges]
    mass = [b - a for a, b in zip(cdf, cdf[1:])]
    raw = [[math.sqrt(a * b) for b in mass] for a in mass]
    total = sum(map(sum, raw))
    return torch.tensor([[v / total for v in row] for row in raw]).reshape(1, 1, 3, 3)


def official_shapes() -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes of the official SAT (Model/SAT.py), written out independently."""
    shapes = {
        "cls_token": (1, 1, D), "loc_token": (1, 1, D), "pos_embed": (1, 1 + GRID * GRID, D),
        "loc_embed": (1, 1, D), "patch_embed.proj.weight": (D, 3, PATCH, PATCH), "patch_embed.proj.bias": (D,),
        "norm.weight": (D,), "norm.bias": (D,), "head.weight": (CLASSES, D, 3, 3), "head.bias": (CLASSES,),
    }
    for i in range(DEPTH):
        shapes.update({
            f"blocks.{i}.norm1.weight": (D,), f"blocks.{i}.norm1.bias": (D,),
            f"blocks.{i}.attn.qkv.weight": (3 * D, D), f"blocks.{i}.attn.qkv.bias": (3 * D,),
            f"blocks.{i}.attn.proj.weight": (D, D), f"blocks.{i}.attn.proj.bias": (D,),
            f"blocks.{i}.norm2.weight": (D,), f"blocks.{i}.norm2.bias": (D,),
            f"blocks.{i}.mlp.fc1.weight": (4 * D, D), f"blocks.{i}.mlp.fc1.bias": (4 * D,),
            f"blocks.{i}.mlp.fc2.weight": (D, 4 * D), f"blocks.{i}.mlp.fc2.bias": (D,),
        })
    return shapes


def random_official_state_dict(gen: torch.Generator) -> dict[str, torch.Tensor]:
    sd = {}
    for key, shape in official_shapes().items():
        value = torch.randn(shape, generator=gen)
        if key.endswith("norm1.weight") or key.endswith("norm2.weight") or key == "norm.weight":
            value = 1 + 0.1 * value
        elif len(shape) == 1:
            value = 0.02 * value
        elif key.endswith("qkv.weight"):
            value = 0.4 * value  # strong enough attention that the masks move away from 0.5
        else:
            value = value / math.sqrt(math.prod(shape[1:]))
        sd[key] = value
    sd["weight"] = official_kernel()
    return sd


def official_forward(sd: dict, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain-torch restatement of the official SAT.forward(phase='test') on official keys -> logits, map."""
    B, N = x.shape[0], GRID * GRID + 2
    t = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=PATCH)
    t = torch.cat([sd["cls_token"].expand(B, -1, -1), t.flatten(2).transpose(1, 2),
                   sd["loc_token"].expand(B, -1, -1)], dim=1) + torch.cat([sd["pos_embed"], sd["loc_embed"]], dim=1)
    masks = []
    for i in range(DEPTH):
        p = f"blocks.{i}."
        h = F.layer_norm(t, (D,), sd[p + "norm1.weight"], sd[p + "norm1.bias"], eps=1e-6)
        qkv = F.linear(h, sd[p + "attn.qkv.weight"], sd[p + "attn.qkv.bias"])
        q, k, v = qkv.reshape(B, N, 3, HEADS, D // HEADS).permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-2, -1)) * (D // HEADS) ** -0.5
        mask = torch.sigmoid(attn[:, :, -1, :].unsqueeze(2).mean(1).unsqueeze(1))
        attn = attn.softmax(dim=-1)
        if i >= 9:
            attn = attn * mask
        h = (attn @ v).transpose(1, 2).reshape(B, N, D)
        t = t + F.linear(h, sd[p + "attn.proj.weight"], sd[p + "attn.proj.bias"])
        h = F.layer_norm(t, (D,), sd[p + "norm2.weight"], sd[p + "norm2.bias"], eps=1e-6)
        h = F.linear(F.gelu(F.linear(h, sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"])),
                     sd[p + "mlp.fc2.weight"], sd[p + "mlp.fc2.bias"])
        t = t + h
        masks.append(mask)
    t = F.layer_norm(t, (D,), sd["norm.weight"], sd["norm.bias"], eps=1e-6)
    loc = torch.stack(masks)[-3:, :, :, :, 1:-1].mean(2).mean(0).reshape(B, GRID, GRID)
    patches = t[:, 1:-1].reshape(B, GRID, GRID, D).permute(0, 3, 1, 2)
    logits = F.conv2d(patches, sd["head.weight"], sd["head.bias"], padding=1).mean(dim=(2, 3))
    return logits, loc


def small_sat(**kwargs) -> SAT:
    """The official DeiT SAT (sat_deit_tiny_patch16_224: SAT on timm's DeiT) at the official layout's size."""
    args = dict(img_size=GRID * PATCH, patch_size=PATCH, embed_dim=D, depth=DEPTH, num_heads=HEADS,
                num_classes=CLASSES)
    return satlib.create_model("sat_deit_tiny_patch16_224", **{**args, **kwargs})


def save_official(sd: dict, path) -> None:
    """As the official train.py saves it: wrapped, DataParallel keys, legacy format."""
    torch.save({"model": {f"module.{k}": v for k, v in sd.items()}, "best_thr": 0.35, "epoch": 27}, path,
               _use_new_zipfile_serialization=False)


@pytest.mark.parametrize("attn_impl", ["explicit", "sdpa"])
def test_official_checkpoint_gives_official_outputs(seeded, tmp_path, attn_impl):
    sd = random_official_state_dict(seeded)
    save_official(sd, tmp_path / "best_gt.pth.tar")
    model = small_sat(attn_impl=attn_impl).eval()
    report = load_pretrained(model, tmp_path / "best_gt.pth.tar")
    assert type(model) is SAT and report.missing == [] and report.unexpected == [] and report.dropped == ["weight"]
    x = torch.randn(2, 3, GRID * PATCH, GRID * PATCH, generator=seeded)
    with torch.no_grad():
        out = model(x)
        logits, loc = official_forward(sd, x)
    torch.testing.assert_close(out.logits, logits, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.loc_map, loc, rtol=1e-4, atol=1e-6)
    assert loc.std() > 0.01  # the maps carry signal, so equality is meaningful


@pytest.mark.parametrize("attn_impl", ["explicit", "sdpa"])
def test_official_checkpoint_gives_official_gradients(seeded, attn_impl):
    """d(loss)/d(every official tensor) through satlib's model equals the gradient through the official forward."""
    sd = {k: v.requires_grad_(k != "weight") for k, v in random_official_state_dict(seeded).items()}
    model = small_sat(attn_impl=attn_impl).eval()
    load_pretrained(model, {k: v.detach() for k, v in sd.items()})
    x, labels = torch.randn(2, 3, GRID * PATCH, GRID * PATCH, generator=seeded), torch.tensor([1, 3])

    def loss(logits, loc):
        return F.cross_entropy(logits, labels) + (loc * torch.linspace(0, 1, loc.numel()).reshape(loc.shape)).sum()

    loss(*official_forward(sd, x)).backward()
    out = model(x)
    loss(out.logits, out.loc_map).backward()
    for name, param in model.named_parameters():  # float32 through 12 blocks: within 1e-3 of each tensor's scale
        expected = sd[name].grad
        torch.testing.assert_close(param.grad, expected, rtol=1e-3, atol=1e-3 * expected.abs().max().item(), msg=name)
    assert sd["loc_token"].grad.abs().max() > 1e-6  # the map's gradient reaches the loc token


def test_convert_official_round_trip(seeded):
    sd = random_official_state_dict(seeded)
    for wrapped in (sd, {"model": sd}, {"state_dict": {f"module.{k}": v for k, v in sd.items()}}):
        converted = convert_official_checkpoint(wrapped)
        assert set(converted) == set(small_sat().state_dict())  # official names, timm's DeiT under SAT
        assert all(converted[k] is sd[k] for k in converted)


def test_convert_official_checks_kernel_and_token(seeded):
    sd = random_official_state_dict(seeded)
    with pytest.raises(ValueError, match="'weight' is not the Gaussian"):
        convert_official_checkpoint({**sd, "weight": torch.ones(1, 1, 3, 3) / 9})
    with pytest.raises(ValueError, match=r"'weight' has shape \(1, 1, 5, 5\)"):
        convert_official_checkpoint({**sd, "weight": torch.ones(1, 1, 5, 5)})
    with pytest.raises(ValueError, match="no 'loc_token'"):
        convert_official_checkpoint({k: v for k, v in sd.items() if k != "loc_token"})


def test_full_checkpoint_with_wrong_classes_names_key_and_shapes(seeded):
    sd = random_official_state_dict(seeded)
    with pytest.raises(ValueError, match=r"'head.weight' has shape \(5, 48, 3, 3\) in the checkpoint but "
                                         r"\(7, 48, 3, 3\) in the model \(num_classes differs\)"):
        load_pretrained(small_sat(num_classes=7), sd)


@pytest.mark.parametrize("name", ["sat_tiny_convstem", "cam_tiny_convstem", "sat_deit3_small_patch16_224",
                                  "cam_deit3_small_patch16_224"])
def test_a_whole_trained_model_reloads_head_included(seeded, tmp_path, name, caplog):
    """A satlib checkpoint (loc token, or a conv head) is a whole model: nothing dropped, nothing new; the
    report is logged by create_model and returned by load_pretrained, never stamped on the model."""
    args = dict(num_classes=3, depth=2, num_query_blocks=1, img_size=32, embed_dim=48, num_heads=3)
    source = satlib.create_model(name, **args).eval()
    torch.save({"model": source.state_dict()}, tmp_path / "trained.pth")
    with caplog.at_level(logging.INFO, logger="satlib.models.weights"):
        target = satlib.create_model(name, pretrained=tmp_path / "trained.pth", **args).eval()
    assert "trained.pth: missing [], unexpected [], dropped []" in caplog.text
    assert not hasattr(target, "load_report")
    assert load_pretrained(target, tmp_path / "trained.pth") == ([], [], [])
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(target(x).logits, source(x).logits, rtol=0, atol=0)
        torch.testing.assert_close(target(x).loc_map, source(x).loc_map, rtol=0, atol=0)


@pytest.fixture
def deit_tiny_state(seeded):
    return timm.create_model("deit_tiny_patch16_224", pretrained=False).state_dict()


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_backbone_weights_load_from_file(tmp_path, deit_tiny_state, fmt):
    path = tmp_path / f"deit_tiny.{fmt}"
    if fmt == "pth":
        torch.save({"model": deit_tiny_state}, path)
    else:
        save_file(deit_tiny_state, str(path))
    model = satlib.create_model("sat_deit_tiny_patch16_224", num_classes=200)
    report = load_pretrained(model, path)
    assert sorted(report.missing) == ["head.bias", "head.weight", "loc_embed", "loc_token"]
    assert report.unexpected == [] and report.dropped == ["head.bias", "head.weight"]
    state = model.state_dict()
    for key, value in deit_tiny_state.items():
        if not key.startswith("head."):
            assert torch.equal(state[key], value), key


def test_backbone_pos_embed_is_resampled(deit_tiny_state):
    model = satlib.create_model("sat_deit_tiny_patch16_224", num_classes=3, img_size=96, pretrained=False)
    load_pretrained(model, deit_tiny_state)
    assert model.pos_embed.shape == (1, 1 + 36, 192)
    assert torch.equal(model.pos_embed[:, 0], deit_tiny_state["pos_embed"][:, 0])  # cls slot kept
    # a smooth field stays smooth: resampling a constant position embedding leaves it constant
    load_pretrained(model, {**deit_tiny_state, "pos_embed": torch.full((1, 197, 192), 0.25)})
    torch.testing.assert_close(model.pos_embed, torch.full((1, 37, 192), 0.25))


def test_distilled_deit_drops_dist_token_and_its_position(seeded):
    state = timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False).state_dict()
    model = satlib.create_model("sat_deit_tiny_patch16_224", num_classes=3)
    report = load_pretrained(model, state)
    assert {"dist_token", "head_dist.weight", "head.weight"} <= set(report.dropped)
    expected = torch.cat([state["pos_embed"][:, :1], state["pos_embed"][:, 2:]], dim=1)
    assert torch.equal(model.pos_embed.detach(), expected)


def test_backbone_of_wrong_size_names_key_and_shapes(seeded):
    small = timm.create_model("deit_small_patch16_224", pretrained=False).state_dict()
    model = satlib.create_model("sat_deit_tiny_patch16_224")
    with pytest.raises(ValueError, match=r"'cls_token' has shape \(1, 1, 384\) in the checkpoint but "
                                         r"\(1, 1, 192\) in the model"):
        load_pretrained(model, small)


def test_missing_or_unexpected_keys_are_errors_unless_not_strict(deit_tiny_state):
    model = satlib.create_model("sat_deit_tiny_patch16_224", num_classes=3)
    partial = {k: v for k, v in deit_tiny_state.items() if not k.startswith("blocks.11.")}
    with pytest.raises(ValueError, match=r"missing \['blocks.11.norm1.weight'"):
        load_pretrained(model, partial)
    extra = {**deit_tiny_state, "blocks.12.norm1.weight": torch.ones(192)}
    with pytest.raises(ValueError, match=r"unexpected \['blocks.12.norm1.weight'\]"):
        load_pretrained(model, extra)
    with pytest.warns(UserWarning, match="unexpected"):
        report = load_pretrained(model, extra, strict=False)
    assert report.unexpected == ["blocks.12.norm1.weight"]


called = []


class Exploit:
    def __reduce__(self):
        return (called.append, ("ran",))


def test_pickled_code_is_never_run(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": {"x": Exploit()}}, path)
    with pytest.raises(ValueError, match="never runs pickled code"):
        load_pretrained(small_sat(), path)
    assert called == []


def test_non_tensor_entries_name_the_key():
    with pytest.raises(ValueError, match="key 'epoch' holds a int"):
        load_pretrained(small_sat(), {"pos_embed": torch.zeros(1), "epoch": 3})


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        satlib.create_model("sat_tiny_convstem", pretrained=tmp_path / "nowhere.pth")


def test_pretrained_true_offline_fails_with_instructions(tmp_path, monkeypatch):
    monkeypatch.setattr(weights, "_reachable", lambda url, timeout=3.0: False)
    with pytest.raises(FileNotFoundError) as error:
        satlib.create_model("sat_deit_small_patch16_224", pretrained=True, cache_dir=tmp_path)
    message = str(error.value)
    assert "https://dl.fbaipublicfiles.com/deit/deit_small_patch16_224-cd65a155.pth" in message
    assert "pretrained='path/to/file'" in message and "--pretrained FILE" in message


def test_unreachable_host_is_detected():
    assert not weights._reachable("https://satlib-weights.invalid/model.pth", timeout=2.0)


def test_pretrained_true_uses_cached_download(tmp_path, deit_tiny_state, monkeypatch):
    monkeypatch.setattr(weights, "_reachable", lambda url, timeout=3.0: pytest.fail("no network wanted"))
    (tmp_path / "checkpoints").mkdir()
    torch.save({"model": deit_tiny_state}, tmp_path / "checkpoints" / "deit_tiny_patch16_224-a1311bcf.pth")
    model = timm.create_model("sat_deit_tiny_patch16_224", pretrained=True, num_classes=4, cache_dir=tmp_path)
    assert torch.equal(model.blocks[5].mlp.fc2.weight, deit_tiny_state["blocks.5.mlp.fc2.weight"])


def test_model_without_weights_says_so():
    with pytest.raises(ValueError, match="sat_tiny_convstem has no pretrained weights"):
        satlib.create_model("sat_tiny_convstem", pretrained=True)


def test_official_state_dict_is_what_the_official_script_saves_and_reads_back(seeded):
    from satlib.models.weights import official_state_dict

    model = small_sat()
    official = official_state_dict(model)
    assert all(key.startswith("module.") for key in official)  # DataParallel, as train.py saves it
    assert torch.equal(official["module.weight"][0, 0], gaussian_kernel(3, 6.0))
    back = convert_official_checkpoint({"model": official})
    assert back.keys() == model.state_dict().keys()
    assert all(torch.equal(back[k], v) for k, v in model.state_dict().items())


# ---------------------------------------------------------------------------------------------
# Other timm ViT backbones: their own layouts, converted as timm converts them
# ---------------------------------------------------------------------------------------------

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


def test_checkpoint_filter_fn_adapts_an_outside_checkpoint(seeded):
    """timm's meaning: wrappers and prefixes stripped, classifier dropped, pos_embed resampled to the model."""
    source = timm_backbone("deit_tiny_patch16_224", seeded, depth=2)
    wrapped = {"model": {f"module.{k}": v for k, v in source.state_dict().items()}}
    model = satlib.create_model("cam_deit_tiny_patch16_224", num_classes=3, depth=2, num_query_blocks=1, img_size=96)
    filtered = checkpoint_filter_fn(wrapped, model)
    assert set(filtered) == set(model.state_dict()) - {"head.weight", "head.bias"}
    expected = resample_abs_pos_embed(source.pos_embed.detach(), new_size=[6, 6], old_size=[14, 14])
    torch.testing.assert_close(filtered["pos_embed"], expected)
    assert torch.equal(filtered["blocks.1.attn.qkv.weight"], source.blocks[1].attn.qkv.weight)


def test_deit3_small_structure_and_checkpoint(seeded, tmp_path):
    """DeiT-III: layer scale, and position embeddings for the patches only (no_embed_class)."""
    source = timm_backbone("deit3_small_patch16_224", seeded, depth=3, img_size=64)
    save_file(source.state_dict(), str(tmp_path / "deit3.safetensors"))
    model = satlib.create_model("sat_deit3_small_patch16_224", num_classes=7, depth=3, img_size=64).eval()
    report = load_pretrained(model, tmp_path / "deit3.safetensors")
    assert type(model) is SAT and model.embed_dim == 384 and model.no_embed_class
    assert model.grid_size == (4, 4) and model.pos_embed.shape == (1, 16, 384)  # no slot for the cls token
    assert sorted(report.missing) == NEW and report.dropped == ["head.bias", "head.weight"]
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
                                img_size=224).eval()
    report = load_pretrained(model, tmp_path / "dinov2.pth")
    assert model.grid_size == (16, 16) and model.num_prefix_tokens == 5 and model.num_reg_tokens == 4
    assert sorted(report.missing) == NEW and report.dropped == []  # DINOv2 has no classifier
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
                                img_size=224).eval()
    report = load_pretrained(model, tmp_path / "clip.safetensors")
    assert model.grid_size == (7, 7) and model.patch_embed.proj.bias is None
    assert torch.equal(model.norm_pre.weight, source.norm_pre.weight)
    assert sorted(report.missing) == NEW and report.dropped == ["head.bias", "head.weight"]
    assert_backbone_loaded(model, source.state_dict(), skip=())


def test_fc_norm_backbone_loads_its_norm_over_the_tokens(seeded):
    """EVA-style backbones pool through fc_norm and have no final norm: fc_norm becomes the token norm."""
    source = timm_backbone("eva_large_patch14_196", seeded, depth=1, embed_dim=32, num_heads=2, img_size=28)
    assert "fc_norm.weight" in source.state_dict() and "norm.weight" not in source.state_dict()
    model = satlib.create_model("sat_eva_large_patch14_196", num_classes=2, depth=1, embed_dim=32, num_heads=2,
                                num_query_blocks=1, img_size=28)
    report = load_pretrained(model, source.state_dict())
    assert torch.equal(model.norm.weight, source.fc_norm.weight)
    assert sorted(report.missing) == NEW and report.dropped == ["head.bias", "head.weight"]


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
