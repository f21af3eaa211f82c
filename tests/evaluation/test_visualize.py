import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")

from satlib.evaluation.visualize import overlay, show_localization, show_localization_grid


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
