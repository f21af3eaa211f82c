import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")

from satlib.evaluation.visualize import (
    FALLBACK_NOTE,
    heat_values,
    nothing_above,
    overlay,
    show_localization,
    show_localization_grid,
)


def test_overlay_is_half_image_half_heatmap():
    image = torch.zeros(3, 16, 16)
    loc_map = torch.zeros(4, 4)
    loc_map[0, 0] = 1.0
    blended = overlay(image, loc_map)
    assert blended.shape == (16, 16, 3)
    assert blended.max() <= 0.5 + 1e-9  # a black image contributes nothing; the heatmap half
    assert not np.allclose(blended[0, 0], blended[15, 15])  # hot corner differs from cold corner


def test_panel_and_grid_draw_boxes_and_iou():
    import matplotlib.pyplot as plt

    images = torch.rand(3, 3, 16, 16)
    maps = torch.rand(3, 4, 4)
    ax = show_localization(images[0], maps[0], pred_box=[1, 1, 8, 8], gt_boxes=torch.tensor([[2.0, 2, 9, 9]]),
                           iou=0.512)
    assert ax.get_title() == "IoU 0.51"
    assert len(ax.patches) == 2
    fig = show_localization_grid(images, maps, pred_boxes=[[0, 0, 4, 4]] * 3, gt_boxes=[[[0, 0, 5, 5]]] * 3,
                                 ious=[0.1, 0.2, 0.3], titles=["a", "b", "c"], cols=2)
    assert len(fig.axes) == 4 and fig.axes[2].get_title() == "c  IoU 0.30"
    plt.close("all")
    with pytest.raises(ValueError, match="3 images but 2 maps"):
        show_localization_grid(images, maps[:2])


def test_checkpoint_figures_spread_their_images_over_the_split():
    # the stand-ins and CUB list their test images class by class: the first 8 would all be one class
    from satlib.assess import spread_indices

    assert spread_indices(360, 8) == [0, 45, 90, 135, 180, 225, 270, 315]
    assert spread_indices(5, 8) == [0, 1, 2, 3, 4]
    assert spread_indices(0, 8) == []


def test_a_map_on_its_own_scale_stays_as_weak_as_it_is():
    # an almost empty SAT map: every value near 0, one patch at 0.03. Min-max per map (as the evaluator
    # normalises it) paints that patch as hot as a confident map's; on the fixed scale (0, 1) it stays blue
    image = torch.zeros(3, 16, 16)
    weak = torch.full((4, 4), 0.01)
    weak[0, 0] = 0.03
    stretched = overlay(image, weak)
    own = overlay(image, weak, value_range=(0.0, 1.0))
    assert np.allclose(stretched[0, 0], overlay(image, torch.eye(4))[0, 0])  # the maximum: red, as a value of 1
    assert own[..., 0].max() == 0 and stretched[..., 0].max() > 0.2  # jet's red half: reached only when stretched
    values = heat_values(torch.tensor([[-1.0, 0.5], [2.0, 0.0]]), (2, 2), value_range=(0.0, 1.0))
    assert values.tolist() == [[0.0, 0.5], [1.0, 0.0]]  # clipped to the scale
    with pytest.raises(ValueError, match="high > low"):
        heat_values(weak, (16, 16), value_range=(1.0, 1.0))


def test_nothing_above_is_where_the_evaluator_falls_back_to_its_own_box():
    from satlib.evaluation import boxes_from_maps

    flat = torch.full((1, 4, 4), 0.5)
    flat[0, 1, 1] = 0.5 + 1e-6  # min-max normalised: the peak reads about 0.09
    peaked = torch.zeros(1, 4, 4)
    peaked[0, 1:3, 1:3] = 1.0
    maps = torch.cat([flat, peaked])
    assert nothing_above(maps, 0.5, 16).tolist() == [True, False]
    sat_boxes = boxes_from_maps(maps, [0.5], 16)[:, 0]
    assert sat_boxes[0].tolist() == [0, 0, 16, 16] and sat_boxes[1].tolist() != [0, 0, 16, 16]
    constant = torch.cat([torch.full((1, 4, 4), 0.5), peaked])  # wsolevaluation normalises after the resize:
    assert nothing_above(constant, 0.5, 16, protocol="wsoleval").tolist() == [True, False]  # only a flat map
    assert boxes_from_maps(constant, [0.5], 16, protocol="wsoleval")[0, 0].tolist() == [0, 0, 0, 0]


def test_a_fallback_box_is_dashed_and_named_in_the_panel():
    import matplotlib.pyplot as plt

    image = torch.rand(3, 16, 16)
    flat = torch.full((4, 4), 0.2)
    flat[2, 2] = 0.2 + 1e-6
    ax = show_localization(image, flat, pred_box=[0, 0, 16, 16], gt_boxes=[[2, 2, 9, 9]], iou=0.2, threshold=0.5)
    assert [text.get_text() for text in ax.texts] == [FALLBACK_NOTE["sat"]]
    assert ax.patches[-1].get_linestyle() == "--"
    peaked = torch.zeros(4, 4)
    peaked[1, 1] = 1.0
    ax = show_localization(image, peaked, pred_box=[4, 4, 8, 8], threshold=0.5, value_range=(0, 1))
    assert len(ax.texts) == 0 and ax.patches[-1].get_linestyle() == "-"
    plt.close("all")


def test_checkpoint_figures_draw_each_method_on_its_own_scale():
    from satlib.assess import colour_scale

    cams = torch.tensor([[[-2.0, 1.0]], [[0.5, 3.0]]])
    assert colour_scale("sat", cams) == (0.0, 1.0)  # a probability, whatever this batch holds
    assert colour_scale("cam", cams) == (-2.0, 3.0)  # one scale for every image of the block
    assert colour_scale("tscam", torch.zeros(2, 1, 2)) == (0.0, 1.0)  # a constant block: any non-empty scale


def test_a_label_is_sized_to_the_image_and_stays_inside_it():
    # a 64-px image with a box at its right edge: the label is small enough to read the image, and whole
    image = torch.zeros(3, 64, 64)
    plain = overlay(image, torch.zeros(4, 4), box=[40, 30, 64, 64])
    labelled = overlay(image, torch.zeros(4, 4), box=[40, 30, 64, 64], label="001.ellipse 0.74")
    changed = np.argwhere(np.abs(labelled - plain).sum(-1) > 0.1)
    rows, cols = changed[:, 0], changed[:, 1]
    assert rows.max() - rows.min() < 64 / 6  # one line of text, a small share of the image
    assert cols.max() - cols.min() > 30  # the whole text, moved left of the edge rather than cut
    assert rows.min() >= 30 and cols.max() <= 63
    big = overlay(torch.zeros(3, 400, 400), torch.zeros(4, 4), box=[10, 10, 200, 200], label="001.ellipse 0.74")
    rows = np.argwhere(np.abs(big - overlay(torch.zeros(3, 400, 400), torch.zeros(4, 4),
                                            box=[10, 10, 200, 200])).sum(-1) > 0.1)[:, 0]
    assert 400 / 40 < rows.max() - rows.min() < 400 / 8  # grows with the image
