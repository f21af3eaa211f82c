"""satlib.localize and satlib.overlay: one call from a model and images to maps, boxes, classes and a picture."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import satlib
from satlib.config import Config
from satlib.data import IMAGENET_MEAN, IMAGENET_STD
from satlib.evaluation import boxes_from_maps
from satlib.info import LoadedModel, ModelInfo
from satlib.localize import default_threshold, model_input

TINY = dict(num_classes=4, img_size=32, stem_widths=(8, 16), embed_dim=24, depth=2, num_heads=2,
            num_query_blocks=1)


@pytest.fixture(params=["sat_tiny_convstem", "cam_tiny_convstem", "tscam_tiny_convstem"])
def model(request, seeded):
    return satlib.create_model(request.param, **TINY).eval()


def test_maps_boxes_labels_and_scores_at_the_images_resolution(model):
    images = torch.randn(3, 3, 48, 40)  # not the model's 32×32: resized in, maps and boxes resized out
    found = satlib.localize(model, images, threshold=0.5)
    assert found.maps.shape == (3, 48, 40) and found.maps.dtype == torch.float32
    assert found.maps.min() >= 0 and found.maps.max() <= 1
    assert (found.maps.amax((1, 2)) - found.maps.amin((1, 2)) > 0.5).all()  # min-max normalised, then resized
    assert found.boxes.shape == (3, 4) and found.labels.shape == (3,) and found.scores.shape == (3,)
    x0, y0, x1, y1 = found.boxes.unbind(-1)
    assert ((0 <= x0) & (x0 < x1) & (x1 <= 40) & (0 <= y0) & (y0 < y1) & (y1 <= 48)).all()
    with torch.no_grad():
        out = model(F.interpolate(images, size=(32, 32), mode="bilinear", antialias=True))
    assert torch.equal(found.labels, out.logits.argmax(-1))
    torch.testing.assert_close(found.scores, out.logits.softmax(-1).amax(-1))
    assert torch.equal(found.boxes, boxes_from_maps(out.loc_map, [0.5], (48, 40))[:, 0])
    if model.method != "sat":  # a class-specific method's map is the predicted class's
        torch.testing.assert_close(out.loc_map, out.class_loc_maps[torch.arange(3), found.labels])


def test_uint8_images_are_normalized_as_the_data_pipeline_does(model):
    image = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8)
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    by_hand = satlib.localize(model, (image.float() / 255 - mean) / std)
    found = satlib.localize(model, image)
    # the same input up to float rounding of the normalisation: maps equal to min-max-normalised precision
    torch.testing.assert_close(found.maps, by_hand.maps, atol=1e-4, rtol=0)
    assert torch.equal(found.boxes, by_hand.boxes) and torch.equal(found.labels, by_hand.labels)
    assert model_input(image, (32, 32)).dtype == torch.float32


def _info(**fields) -> ModelInfo:
    """A ModelInfo of the TINY models: ImageNet normalisation, SAT protocol, no threshold unless given."""
    base = dict(name="sat_tiny_convstem", num_classes=4, class_names=(), img_size=32, threshold=None,
                protocol="sat", mean=IMAGENET_MEAN, std=IMAGENET_STD, config=Config())
    return ModelInfo(**{**base, **fields})


def test_the_threshold_is_the_infos_then_the_protocols(model):
    images = torch.randn(2, 3, 32, 32)
    assert satlib.localize(model, images).threshold == default_threshold("sat") == 0.4
    assert default_threshold("wsoleval") == 0.5
    assert satlib.localize(model, images, info=_info(protocol="wsoleval")).threshold == 0.5
    found = satlib.localize(LoadedModel(model, _info(threshold=0.8)), images)
    assert found.threshold == 0.8
    assert torch.equal(found.boxes, satlib.localize(model, images, threshold=0.8).boxes)
    assert satlib.localize(LoadedModel(model, _info(threshold=0.8)), images, threshold=0.3).threshold == 0.3
    assert not model.training  # localize leaves the model in the mode it found it


def test_the_info_protocol_and_normalisation_are_used(model):
    """A LoadedModel's protocol picks the box rule, and its (mean, std) normalises uint8 images."""
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    wsoleval = satlib.localize(model, images, info=_info(protocol="wsoleval"), threshold=0.5)
    assert torch.equal(wsoleval.maps, satlib.localize(model, images, protocol="wsoleval", threshold=0.5).maps)
    plain = _info(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    by_hand = satlib.localize(model, images.float() / 255)  # float images go in as they are
    torch.testing.assert_close(satlib.localize(LoadedModel(model, plain), images).maps, by_hand.maps,
                               atol=1e-4, rtol=1e-4)
    assert not torch.allclose(satlib.localize(model, images).maps, by_hand.maps)  # ImageNet's differs


def test_localize_takes_a_loaded_checkpoint(trained_run):
    loaded = satlib.load(trained_run.checkpoint)
    assert loaded.info.threshold == trained_run.record["best_threshold"]
    images = torch.randint(0, 256, (2, 3, 40, 48), dtype=torch.uint8)
    found = satlib.localize(loaded, images)
    assert found.threshold == loaded.info.threshold and found.maps.shape == (2, 40, 48)
    again = satlib.localize(loaded.model, images, info=loaded.info)  # the same, with the info passed apart
    assert torch.equal(found.boxes, again.boxes) and torch.equal(found.maps, again.maps)
    bare = satlib.localize(loaded.model, images)  # a bare module: the protocol's default threshold
    assert bare.threshold == default_threshold("sat")


def test_bad_images_are_named(model):
    with pytest.raises(ValueError, match=r"images must be \(B, 3, H, W\), got shape \(3, 32, 32\)"):
        satlib.localize(model, torch.randn(3, 32, 32))


def test_overlay_is_at_the_images_resolution_with_the_box_drawn():
    image = torch.zeros(3, 120, 90, dtype=torch.uint8)
    loc_map = torch.zeros(6, 6)
    loc_map[2:4, 2:4] = 1.0
    picture = satlib.overlay(image, loc_map, torch.tensor([10, 20, 60, 100]))
    assert picture.shape == (120, 90, 3) and picture.min() >= 0 and picture.max() <= 1
    green = (picture[..., 1] > 0.99) & (picture[..., 0] < 0.01) & (picture[..., 2] < 0.01)
    rows, cols = np.nonzero(green)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (20, 99, 10, 59)  # end-exclusive box
    assert not green[60, 35]  # the outline only
    captioned = satlib.overlay(image, loc_map, torch.tensor([10, 20, 60, 100]), label="001.disc 0.93")
    rows, cols = np.nonzero(np.abs(captioned - picture).sum(-1) > 0)
    assert len(rows) > 50 and rows.min() >= 20 and rows.max() < 50 and cols.min() >= 10  # at the box's corner
    plain = satlib.overlay(image, loc_map)
    hot, cold = plain[60, 45], plain[5, 5]  # jet at half strength on a black image: dark red, dark blue
    assert hot[0] > 0.2 > cold[0] and cold[2] > 0.2 > hot[2]
