import math

import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

import satlib
from satlib import SAT, convert_official_checkpoint, gaussian_kernel, load_pretrained
from satlib.models import weights

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
    args = dict(img_size=GRID * PATCH, patch_size=PATCH, embed_dim=D, depth=DEPTH, num_heads=HEADS,
                num_classes=CLASSES)
    return SAT(**{**args, **kwargs})


@pytest.mark.parametrize("attn_impl", ["explicit", "sdpa"])
def test_official_checkpoint_gives_official_outputs(seeded, tmp_path, attn_impl):
    sd = random_official_state_dict(seeded)
    path = tmp_path / "best_gt.pth.tar"  # as train.py saves it: wrapped, DataParallel keys, legacy format
    torch.save({"model": {f"module.{k}": v for k, v in sd.items()}, "best_thr": 0.35, "epoch": 27}, path,
               _use_new_zipfile_serialization=False)
    model = small_sat(attn_impl=attn_impl).eval()
    report = load_pretrained(model, path)
    assert report.missing == [] and report.unexpected == [] and report.dropped == ["weight"]
    x = torch.randn(2, 3, GRID * PATCH, GRID * PATCH, generator=seeded)
    with torch.no_grad():
        out = model(x)
        logits, loc = official_forward(sd, x)
    torch.testing.assert_close(out.logits, logits, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.loc_map, loc, rtol=1e-4, atol=1e-6)
    assert loc.std() > 0.01  # the maps carry signal, so equality is meaningful


def test_convert_official_round_trip(seeded):
    sd = random_official_state_dict(seeded)
    for wrapped in (sd, {"model": sd}, {"state_dict": {f"module.{k}": v for k, v in sd.items()}}):
        converted = convert_official_checkpoint(wrapped)
        assert set(converted) == set(small_sat().state_dict())
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


def test_satlib_checkpoint_round_trip(seeded, tmp_path):
    source = satlib.create_model("sat_tiny_convstem", num_classes=3, img_size=32).eval()
    torch.save({"model": source.state_dict()}, tmp_path / "ckpt.pth")
    target = satlib.create_model("sat_tiny_convstem", num_classes=3, img_size=32,
                                 pretrained=tmp_path / "ckpt.pth").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(target(x).loc_map, source(x).loc_map)


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
