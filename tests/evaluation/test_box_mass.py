import math

import torch

from satlib.evaluation.box_mass import box_masks, box_mass


def test_box_masks_are_inclusive_and_take_the_union_of_an_images_boxes():
    masks = box_masks([torch.tensor([[1, 1, 2, 2]]), torch.tensor([[0, 0, 1, 3], [0, 0, 3, 1]])], (4, 4))
    assert masks.shape == (2, 4, 4)
    assert masks[0].sum() == 4 and masks[0, 1:3, 1:3].all()
    assert masks[1].sum() == 8 + 8 - 4  # two 2x4 strips that share a 2x2 corner


def test_a_map_on_the_box_has_all_its_mass_inside_and_an_inverted_map_none():
    on_box = torch.zeros(1, 8, 8)
    on_box[0, 2:6, 1:4] = 1.0  # the box x 1..3, y 2..5: 12 of 64 pixels
    box = [torch.tensor([[1, 2, 3, 5]])]
    found = box_mass(on_box, box, 8)  # a map at the image's size: the resize keeps it
    assert math.isclose(found.inside_share.item(), 1.0, abs_tol=1e-6)
    assert math.isclose(found.box_share.item(), 12 / 64)
    assert found.inside_mean.item() > 0.99 and found.outside_mean.item() < 1e-6
    inverted = box_mass(1.0 - on_box, box, 8)
    assert inverted.inside_share.item() < 1e-6 and inverted.inside_mean < inverted.outside_mean


def test_a_map_spread_evenly_puts_the_boxs_share_of_its_mass_inside():
    flat = torch.ones(1, 8, 8)
    flat[0, 7, 7] = 0.0  # one low pixel outside the box, so that min-max normalisation keeps the rest at 1
    found = box_mass(flat, [torch.tensor([[0, 0, 3, 3]])], 8)
    assert math.isclose(found.inside_share.item(), 16 / 63, rel_tol=1e-4)  # 16 of the 63 unit pixels
    assert math.isclose(found.box_share.item(), 16 / 64)


def test_a_coarse_map_is_resized_to_the_image_first():
    coarse = torch.zeros(1, 2, 2)
    coarse[0, 0, 0] = 1.0  # the top-left quarter of a 2x2 grid
    found = box_mass(coarse, [torch.tensor([[0, 0, 7, 7]])], 16)
    assert math.isclose(found.box_share.item(), 0.25)
    assert 0.7 < found.inside_share.item() < 0.8  # bilinear resizing spreads some of the corner's mass out
    assert found.inside_mean > 5 * found.outside_mean


def test_a_box_over_the_whole_image_leaves_no_outside():
    found = box_mass(torch.rand(1, 4, 4), [torch.tensor([[0, 0, 3, 3]])], 4)
    assert found.box_share.item() == 1.0 and math.isclose(found.inside_share.item(), 1.0, rel_tol=1e-6)
    assert torch.isnan(found.outside_mean).all()
