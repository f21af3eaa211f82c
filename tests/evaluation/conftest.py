import pytest

from eval_fixtures import random_gt_boxes, smooth_maps


@pytest.fixture
def maps_and_boxes():
    return smooth_maps(60, seed=1), random_gt_boxes(60, seed=2, size=32)
