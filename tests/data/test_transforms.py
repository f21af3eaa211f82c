import torch

from satlib.data.transforms import resize_boxes_wsoleval, resize_crop_boxes


def test_resize_crop_boxes_matches_hand_computed_cub_row():
    # CUB test image 500x335, box (60, 27, 385, 331); R=256, crop=224, shift 16:
    # x0 = 60/500*256-16 = 14.72, y0 = 27/335*256-16 = 4.63, x1 = 385/500*256-16 = 181.12,
    # y1 = 331/335*256-16 = 236.9 -> clipped to 223.
    boxes = resize_crop_boxes([[60.0, 27.0, 385.0, 331.0]], (500, 335), 256, 224)
    assert boxes.tolist() == [[14.0, 4.0, 181.0, 223.0]]
    assert boxes.dtype == torch.float32


def test_resize_crop_boxes_clips_left_of_crop_and_truncates_toward_zero():
    # x0 = 2/100*256-16 = -10.88 -> 0; x1 = 6/100*256-16 = -0.64 -> int() truncates to 0, not -1.
    boxes = resize_crop_boxes(torch.tensor([[2.0, 50.0, 6.0, 60.0]]), (100, 100), 256, 224)
    assert boxes.tolist() == [[0.0, 112.0, 0.0, 137.0]]


def test_resize_crop_boxes_keeps_leading_axes_and_float32_mode():
    boxes = torch.tensor([[[10.0, 10.0, 90.0, 90.0]], [[0.0, 0.0, 100.0, 100.0]]])
    out = resize_crop_boxes(boxes, (100, 100), 96, 96, dtype=torch.float32)
    assert out.shape == (2, 1, 4)
    # R == crop: shift 0, x1 clipped to crop - 1.
    assert out[1, 0].tolist() == [0.0, 0.0, 95.0, 95.0]
    assert out[0, 0].tolist() == [9.0, 9.0, 86.0, 86.0]  # 10/100*96 = 9.6, 90/100*96 = 86.4


def test_resize_boxes_wsoleval_scales_without_clipping():
    # wsolevaluation: int(x * 224 / w); 499 * 224 / 500 = 223.55 -> 223, 375 * 224 / 375 = 224.
    boxes = resize_boxes_wsoleval([[45, 49, 499, 375]], (500, 375), 224)
    assert boxes.tolist() == [[20.0, 29.0, 223.0, 224.0]]


def test_test_boxes_drop_boxes_the_centre_crop_cut_away():
    from satlib.data.transforms import test_boxes

    # 512 x 512 image, Resize(256) + CenterCrop(224): the crop keeps x, y in [32, 480) of the original.
    boxes = torch.tensor([[0.0, 100.0, 20.0, 200.0],     # left of the crop: x1 -> int(10 - 16) = -6
                          [100.0, 100.0, 300.0, 300.0],  # inside
                          [500.0, 0.0, 510.0, 10.0]])    # right of and above the crop
    kept = test_boxes(boxes, (512, 512), img_size=224, resize_size=256, protocol="sat")
    assert kept.tolist() == [[34.0, 34.0, 134.0, 134.0]]
    assert test_boxes(boxes, (512, 512), 224, 256, protocol="wsoleval").shape == (3, 4)
