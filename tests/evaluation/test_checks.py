import pytest
import torch

from satlib.evaluation import LocalizationEvaluator
from satlib.evaluation.checks import check_gt_boxes
from satlib.evaluation.components import component_extents


@pytest.mark.parametrize("box,message", [([0, 0, 17, 4], r"gt_boxes\[1\] row 0"), ([5, 0, 4, 4], "x0 <= x1"),
                                         ([-1, 0, 4, 4], "inside"), ([0, float("nan"), 4, 4], "finite")])
def test_bad_gt_boxes_rejected(box, message):
    with pytest.raises(ValueError, match=message):
        check_gt_boxes([torch.tensor([[0.0, 0, 4, 4]]), torch.tensor([box])], 16)


def test_gt_batch_mismatch_rejected():
    with pytest.raises(ValueError, match="2 images but the maps have 3"):
        check_gt_boxes([torch.zeros(1, 4)] * 2, 16, batch=3)


def test_unknown_backend_rejected_where_it_is_given():
    with pytest.raises(ValueError, match="unknown backend 'numba'"):
        LocalizationEvaluator(backend="numba")  # at construction, not at the first update
    with pytest.raises(ValueError, match="unknown backend"):
        component_extents(torch.zeros(1, 4, 4), torch.zeros(1, 1), "sat", backend="cuda")
