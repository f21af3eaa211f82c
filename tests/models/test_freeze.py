"""Frozen-backbone mode: an optimizer step changes exactly the trainable tensors, and frozen modules
keep their BatchNorm statistics and run without dropout while the model trains."""

import pytest
import torch

import satlib
from satlib.losses import build_loss
from satlib.models import count_parameters
from satlib.train import param_groups

TINY_DINOV2 = dict(img_size=28, embed_dim=48, num_heads=3, depth=3, num_query_blocks=1)


def one_step(model, x, labels) -> dict[str, torch.Tensor]:
    """One AdamW step as the training loop takes it; returns the state dict before the step."""
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.AdamW(param_groups(model, weight_decay=0.05), lr=1e-2)
    model.train()
    loss, _ = build_loss(model.method)(model(x), labels)
    loss.backward()
    optimizer.step()
    return before


def changed(model, before: dict) -> set[str]:
    return {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}


@pytest.mark.parametrize("name, kwargs", [("sat_tiny_convstem", dict(img_size=32)),
                                          ("sat_vit_small_patch14_reg4_dinov2", TINY_DINOV2)])
def test_a_step_changes_only_the_loc_token_its_embedding_and_the_head(seeded, name, kwargs):
    model = satlib.create_model(name, num_classes=3, freeze_backbone=True, **kwargs)
    size = model.img_size[0]
    before = one_step(model, torch.randn(4, 3, size, size), torch.tensor([0, 1, 2, 1]))
    assert changed(model, before) == {"loc_token", "loc_embed", "head.weight", "head.bias"}  # BN statistics too
    trainable, total = count_parameters(model)
    assert trainable == model.loc_token.numel() * 2 + model.head.weight.numel() + model.head.bias.numel()
    assert total > 10 * trainable


def test_train_query_blocks_adds_the_final_blocks(seeded):
    model = satlib.create_model("sat_vit_small_patch14_reg4_dinov2", num_classes=3, freeze_backbone=True,
                                train_query_blocks=True, **{**TINY_DINOV2, "num_query_blocks": 2})
    before = one_step(model, torch.randn(2, 3, 28, 28), torch.tensor([0, 2]))
    blocks = {k.split(".")[1] for k in changed(model, before) if k.startswith("blocks.")}
    assert blocks == {"1", "2"} and {"loc_token", "head.weight"} <= changed(model, before)
    assert not {k for k in changed(model, before) if k.startswith(("patch_embed", "norm.", "pos_embed", "reg_"))}


def test_a_frozen_baseline_trains_its_head_alone(seeded):
    model = satlib.create_model("tscam_tiny_convstem", num_classes=3, img_size=32, freeze_backbone=True)
    before = one_step(model, torch.randn(2, 3, 32, 32), torch.tensor([0, 2]))
    assert changed(model, before) == {"head.weight", "head.bias"}


def test_frozen_modules_stay_in_eval_mode(seeded):
    model = satlib.create_model("sat_tiny_convstem", num_classes=3, img_size=32, drop_rate=0.3, drop_path_rate=0.5,
                                freeze_backbone=True, train_query_blocks=True, num_query_blocks=1)
    model.train()
    assert model.training and model.head.training and model.blocks[-1].training
    assert not model.patch_embed.training and not model.blocks[0].training and not model.pos_drop.training
    x = torch.randn(2, 3, 32, 32)
    model.blocks[-1].eval()  # the one trainable block's dropout aside, the network is deterministic
    torch.testing.assert_close(model(x).logits, model(x).logits, rtol=0, atol=0)
    free = satlib.create_model("sat_tiny_convstem", num_classes=3, img_size=32, drop_rate=0.3, drop_path_rate=0.5)
    free.train()
    assert not torch.equal(free(x).logits, free(x).logits)  # the same model unfrozen: dropout at work


def test_train_query_blocks_needs_a_frozen_backbone():
    with pytest.raises(ValueError, match="train_query_blocks=True only applies with freeze_backbone=True"):
        satlib.create_model("sat_tiny_convstem", train_query_blocks=True)


@pytest.mark.trains
def test_frozen_training_prints_the_trainable_count(tiny_config, capsys):
    from satlib.train import train

    config = tiny_config(**{"model.freeze_backbone": True, "train.epochs": 1})
    train(config, progress=False)
    width, classes = config.model.kwargs["embed_dim"], 3
    trainable = 2 * width + classes * width * 3 * 3 + classes  # loc token and embedding, 3×3 conv head
    assert f"sat_tiny_convstem: {trainable:,} trainable parameters of " in capsys.readouterr().out


@pytest.mark.parametrize("recipe, frozen", [("cub_dinov2_frozen", True), ("cub_deit3_small", False)])
def test_backbone_recipes_build_their_models(recipe, frozen):
    from satlib.build import build_model
    from satlib.config import load_config

    config = load_config(recipe)
    model = build_model(config, with_pretrained=False)
    trainable, total = count_parameters(model)
    assert config.model.freeze_backbone == frozen
    assert model.grid_size == ((16, 16) if frozen else (14, 14))  # 224 px in 14- or 16-px patches
    if frozen:  # TriLite's scale: under 800K trainable parameters on a frozen DINOv2 ViT-S/14
        assert trainable == 2 * 384 + 200 * 384 * 9 + 200 < 800_000 < total
    else:
        assert trainable == total
