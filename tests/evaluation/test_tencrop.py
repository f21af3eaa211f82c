import pytest
import torch
from torchvision.transforms import TenCrop

from satlib.evaluation import ten_crop_probs


def test_ten_crop_matches_per_image_official_loop():
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(3, 3, 40, 40, generator=gen)
    weight = torch.randn(5, 3 * 32 * 32, generator=gen)

    def classify(x):
        return x.flatten(1) @ weight.T

    ours = ten_crop_probs(classify, images, crop_size=32)
    for i in range(3):
        crops = torch.stack(TenCrop(32)(images[i]))  # the official: per image, softmax, mean
        expected = torch.softmax(classify(crops), dim=1).mean(0)
        assert torch.allclose(ours[i], expected, atol=1e-6)
    assert torch.allclose(ours.sum(1), torch.ones(3))


def test_ten_crop_rejects_small_images():
    with pytest.raises(ValueError, match="smaller than"):
        ten_crop_probs(lambda x: x.flatten(1), torch.zeros(1, 3, 20, 20), crop_size=32)
