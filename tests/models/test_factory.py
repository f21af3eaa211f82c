"""Model names (`<method>_<backbone>[.<tag>]`), their pretrained cfgs without a model, `create_model`'s errors,
and what satlib.models may import."""

import ast
from pathlib import Path

import pytest

import satlib
from satlib.models import ModelName, baseline_name, factory, model_pretrained_cfg, parse_model_name

MODELS = Path(satlib.__file__).parent / "models"


@pytest.mark.parametrize("name, parts", [
    ("sat_deit_small_patch16_224", ("sat", "deit_small_patch16_224", "")),
    ("sat_tiny_convstem", ("sat", "tiny_convstem", "")),
    ("tscam_tiny_convstem", ("tscam", "tiny_convstem", "")),
    ("cam_vit_base_patch16_clip_224.openai", ("cam", "vit_base_patch16_clip_224", "openai")),
])
def test_names_parse_into_method_backbone_and_tag(name, parts):
    parsed = parse_model_name(name)
    assert isinstance(parsed, ModelName) and tuple(parsed) == parts and str(parsed) == name


@pytest.mark.parametrize("name, message", [
    ("sat_huge", "unknown model 'sat_huge'"),
    ("gradcam_tiny_convstem", "unknown model 'gradcam_tiny_convstem'"),
    ("sat", "unknown model 'sat'"),
    ("tiny_convstem", "unknown model 'tiny_convstem'"),
    ("sat_resnet18", "sat_resnet18: timm builds resnet18 in timm.models.resnet, not as a VisionTransformer"),
    ("cam_sat_tiny_convstem", "cam_sat_tiny_convstem: timm builds sat_tiny_convstem in satlib.models.factory"),
])
def test_unknown_names_are_named(name, message):
    with pytest.raises(ValueError, match=message):
        parse_model_name(name)
    with pytest.raises(ValueError, match=message):
        model_pretrained_cfg(name)
    with pytest.raises(ValueError, match=message):  # create_model reads names with the same parser
        satlib.create_model(name)


def test_baseline_name_keeps_backbone_and_tag():
    assert baseline_name("sat_tiny_convstem", "cam") == "cam_tiny_convstem"
    assert baseline_name("sat_vit_base_patch16_clip_224.openai", "tscam") == "tscam_vit_base_patch16_clip_224.openai"
    assert baseline_name("cam_deit_small_patch16_224", "sat") == "sat_deit_small_patch16_224"
    with pytest.raises(ValueError, match="unknown method 'gradcam' for a baseline of 'sat_tiny_convstem'"):
        baseline_name("sat_tiny_convstem", "gradcam")


def test_pretrained_cfg_without_building_the_model(monkeypatch):
    monkeypatch.setattr(factory, "create_backbone", lambda *a, **k: pytest.fail("no model wanted"))
    convstem = model_pretrained_cfg("sat_tiny_convstem")
    assert convstem["input_size"] == (3, 96, 96) and convstem["crop_pct"] == 1.0
    assert model_pretrained_cfg("tscam_tiny_convstem") == convstem  # a baseline shares its backbone's cfg
    deit = model_pretrained_cfg("cam_deit_small_patch16_224")
    assert deit["hf_hub_id"] == "timm/deit_small_patch16_224.fb_in1k" and deit["mean"] == (0.485, 0.456, 0.406)
    clip = model_pretrained_cfg("sat_vit_base_patch16_clip_224.openai")
    assert clip["mean"] == pytest.approx((0.4815, 0.4578, 0.4082), abs=1e-4) and clip["tag"] == "openai"
    dinov2 = model_pretrained_cfg("sat_vit_small_patch14_reg4_dinov2")
    assert dinov2["hf_hub_id"] == "timm/vit_small_patch14_reg4_dinov2.lvd142m"


def test_a_built_model_declares_the_cfg_of_its_name(seeded):
    model = satlib.create_model("cam_vit_base_patch16_clip_224.openai", num_classes=2, depth=1, num_query_blocks=1)
    assert model.pretrained_cfg == model_pretrained_cfg("cam_vit_base_patch16_clip_224.openai")


def test_every_backbone_has_both_baselines():
    names = satlib.list_models()
    for backbone in ("deit_tiny_patch16_224", "deit_small_patch16_224", "deit_base_patch16_224", "tiny_convstem"):
        assert {f"sat_{backbone}", f"cam_{backbone}", f"tscam_{backbone}"} <= set(names)
    assert all(parse_model_name(name) for name in names)


def test_arguments_the_backbone_does_not_take_are_named():
    with pytest.raises(ValueError, match="tiny_convstem: timm cannot build it .*'embed_dims'"):
        satlib.create_model("sat_tiny_convstem", embed_dims=64)
    with pytest.raises(ValueError, match="vit_small_patch16_224: timm cannot build it .*'stem_widths'"):
        satlib.create_model("sat_vit_small_patch16_224", stem_widths=(8, 16))
    with pytest.raises(ValueError, match="deit_tiny_distilled_patch16_224: timm cannot build it as a backbone "
                                         ".* distilled head reads the class and distillation tokens"):
        satlib.create_model("sat_deit_tiny_distilled_patch16_224", img_size=32)
    with pytest.raises(ValueError, match="TS-CAM reads the cls token's attention"):
        satlib.create_model("tscam_vit_small_patch16_224", class_token=False, img_size=32, depth=3)
    with pytest.raises(ValueError, match="num_query_blocks=5 must be between 1 and depth=4"):
        satlib.create_model("sat_tiny_convstem", num_query_blocks=5)
    with pytest.raises(ValueError, match="sat_tiny_convstem: train_query_blocks=True only applies"):
        satlib.create_model("sat_tiny_convstem", train_query_blocks=True)


def test_models_import_neither_the_loss_nor_data_config_checkpoint_or_training():
    """satlib.models takes tensors and files: the loss, data, config, checkpoints and the loop sit above it."""
    above = ("satlib.losses", "satlib.data", "satlib.config", "satlib.checkpoint", "satlib.train")
    for path in MODELS.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            assert not [m for m in modules if m.startswith(above)], (path.name, modules)
