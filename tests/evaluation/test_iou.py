import pytest
import torch

from satlib.evaluation import box_iou
from satlib.evaluation.iou import NO_BOX, max_iou, pad_gt_boxes

META = torch.device("meta")


def test_box_iou_inclusive_formula():
    iou = box_iou(torch.tensor([[0, 0, 9, 9], [0, 0, 4, 9]]), torch.tensor([[0, 0, 9, 9], [10, 10, 12, 12]]))
    assert iou[0].tolist() == [1.0, 0.0]
    assert iou[1, 0].item() == pytest.approx(50 / 100)
    # touching boxes overlap by one pixel column under the +1 convention
    assert box_iou(torch.tensor([[0, 0, 2, 0]]), torch.tensor([[2, 0, 4, 0]]))[0, 0].item() == pytest.approx(1 / 5)


def test_max_iou_over_several_gt_and_padding():
    boxes = torch.tensor([[[0, 0, 4, 4]], [[0, 0, 4, 4]]])  # (B=2, T=1, 4)
    gt = [torch.tensor([[10.0, 10, 12, 12], [0, 0, 4, 4]]), torch.tensor([[0.0, 0, 9, 4]])]
    padded, _ = pad_gt_boxes(gt, torch.device("cpu"))
    assert max_iou(boxes, padded).tolist() == [[1.0], [0.5]]


def test_pad_gt_boxes_repeats_the_first_box_and_fills_an_image_without_boxes():
    gt = [torch.tensor([[1.0, 2, 3, 4], [5, 6, 7, 8]]), torch.zeros(0, 4), torch.tensor([[0.0, 0, 9, 9]])]
    padded, valid = pad_gt_boxes(gt, torch.device("cpu"))
    assert padded.dtype == torch.float64
    assert padded.tolist() == [[[1, 2, 3, 4], [5, 6, 7, 8]], [list(NO_BOX)] * 2, [[0, 0, 9, 9]] * 2]
    assert valid.tolist() == [[True, True], [False, False], [True, False]]
    assert box_iou(torch.tensor([[0, 0, 15, 15]]), torch.tensor([NO_BOX])).item() == 0.0


def test_pad_gt_boxes_follows_the_device_of_the_boxes():
    """An image whose every box the centre crop removed, among boxes on another device than the CPU."""
    boxes = [torch.zeros(2, 4, dtype=torch.float64, device=META), torch.zeros(0, 4, dtype=torch.float64, device=META)]
    padded, valid = pad_gt_boxes(boxes, META)
    assert padded.device == valid.device == META
    assert padded.shape == (2, 2, 4) and valid.shape == (2, 2)


def test_pad_gt_boxes_moves_every_image_to_the_device():
    boxes = [torch.zeros(1, 4), torch.zeros(0, 4)]  # CPU boxes, maps on another device
    padded, valid = pad_gt_boxes(boxes, META)
    assert padded.device == valid.device == META


def test_max_iou_follows_the_boxes_device():
    boxes = torch.zeros(2, 3, 5, 4, device=META)  # (B, T, A, 4)
    gt = torch.zeros(2, 4, 4, device=META)
    assert max_iou(boxes, gt, torch.zeros(2, 3, 5, dtype=torch.bool, device=META)).shape == (2, 3)
    assert max_iou(boxes[:, :, 0], gt).device == META
