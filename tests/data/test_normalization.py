"""Images are normalised with the model's backbone's mean and std (ImageNet's, or CLIP's, ...)."""

from types import SimpleNamespace

import pytest
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from satlib.build import build_datasets, normalization
from satlib.config import load_config
from satlib.localize import input_normalization, model_input


@pytest.mark.parametrize("name, mean", [
    ("sat_deit_small_patch16_224", IMAGENET_DEFAULT_MEAN),
    ("sat_tiny_convstem", IMAGENET_DEFAULT_MEAN),
    ("cam_tiny_convstem", IMAGENET_DEFAULT_MEAN),
    ("sat_vit_small_patch14_reg4_dinov2", IMAGENET_DEFAULT_MEAN),
    ("sat_vit_base_patch16_clip_224", OPENAI_CLIP_MEAN),
    ("tscam_vit_base_patch16_clip_224.openai", OPENAI_CLIP_MEAN),
])
def test_model_normalization_is_the_backbones_own(name, mean):
    assert normalization(load_config(overrides=[f"model.name={name}"]))[0] == pytest.approx(mean)


def test_datasets_normalise_as_the_model_expects(tiny_data, tmp_path):
    """A white pixel comes out as (1 - mean) / std of the model's backbone."""
    from tiny_recipe import tiny_overrides

    config = load_config("synthetic_cpu", tiny_overrides(tiny_data, tmp_path))
    imagenet = build_datasets(config, tiny_data, train=False)[1]
    config.model.name = "sat_vit_base_patch16_clip_224"
    clip = build_datasets(config, tiny_data, train=False)[1]
    assert clip.normalization == (OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)
    std_imagenet = torch.tensor(imagenet.normalization[1]).view(3, 1, 1)
    mean_imagenet = torch.tensor(imagenet.normalization[0]).view(3, 1, 1)
    pixels = imagenet[0]["image"] * std_imagenet + mean_imagenet  # back to [0, 1]
    expected = (pixels - torch.tensor(OPENAI_CLIP_MEAN).view(3, 1, 1)) / torch.tensor(OPENAI_CLIP_STD).view(3, 1, 1)
    torch.testing.assert_close(clip[0]["image"], expected, atol=1e-5, rtol=1e-5)


def test_config_overrides_and_refuses_half_a_normalisation():
    config = load_config("synthetic_cpu", ["data.mean=[0.5, 0.5, 0.5]", "data.std=[0.25, 0.25, 0.25]"])
    assert normalization(config) == ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    config.data.std = []
    with pytest.raises(ValueError, match="data.mean"):
        normalization(config)


def test_localize_normalises_uint8_images_as_the_model_expects():
    class Clip(torch.nn.Module):
        pretrained_cfg = {"mean": OPENAI_CLIP_MEAN, "std": OPENAI_CLIP_STD}

    white = torch.full((1, 3, 4, 4), 255, dtype=torch.uint8)
    out = model_input(white, (4, 4), input_normalization(Clip()))
    expected = (1 - torch.tensor(OPENAI_CLIP_MEAN)) / torch.tensor(OPENAI_CLIP_STD)
    torch.testing.assert_close(out[0, :, 0, 0], expected)
    run = SimpleNamespace(normalization=((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)))  # a checkpoint's run overrides the cfg
    assert model_input(white, (4, 4), input_normalization(Clip(), run)).max() == 1.0
