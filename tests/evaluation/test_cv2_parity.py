"""satlib against the official codes' OpenCV calls (skipped when cv2 is not installed)."""

import numpy as np
import pytest
import torch

from satlib.evaluation import boxes_from_maps, normalize_maps
from satlib.evaluation.normalize import resize_bicubic, resize_bilinear

from eval_fixtures import smooth_maps

cv2 = pytest.importorskip("cv2")


def official_boxes(scoremap: np.ndarray, thresholds, multi_contour: bool) -> list[list[list[int]]]:
    """wsolevaluation's compute_bboxes_from_scoremaps, as written there."""
    height, width = scoremap.shape
    image = np.expand_dims((scoremap * 255).astype(np.uint8), 2)
    out = []
    for t in thresholds:
        _, binary = cv2.threshold(src=image, thresh=int(t * np.max(image)), maxval=255, type=cv2.THRESH_BINARY)
        contours = cv2.findContours(image=binary, mode=cv2.RETR_TREE, method=cv2.CHAIN_APPROX_SIMPLE)[0]
        if len(contours) == 0:
            out.append([[0, 0, 0, 0]])
            continue
        if not multi_contour:
            contours = [max(contours, key=cv2.contourArea)]
        boxes = []
        for contour in contours:
            x, y, w, h = cv2.boundingRect(contour)
            boxes.append([x, y, min(x + w, width - 1), min(y + h, height - 1)])
        out.append(boxes)
    return out


def test_bilinear_is_cv2_inter_linear():
    maps = torch.rand(8, 14, 14)
    ours = resize_bilinear(maps, (224, 224)).numpy()
    for i in range(8):
        assert np.array_equal(ours[i], cv2.resize(maps[i].numpy(), (224, 224)))


@pytest.mark.parametrize("shape,size", [((14, 14), (224, 224)), ((9, 11), (30, 37)), ((20, 30), (7, 9)),
                                        ((1, 3), (5, 6))])
def test_bicubic_is_cv2_inter_cubic_bit_for_bit_without_ipp(shape, size):
    """cv2's own INTER_CUBIC code (the default wheels hand it to IPP instead: the next test)."""
    maps = torch.rand(4, *shape, generator=torch.Generator().manual_seed(0)) * 10
    ours = resize_bicubic(maps, size).numpy()
    use_ipp = cv2.ipp.useIPP()
    cv2.ipp.setUseIPP(False)
    try:
        theirs = [cv2.resize(m, size[::-1], interpolation=cv2.INTER_CUBIC) for m in maps.numpy()]
    finally:
        cv2.ipp.setUseIPP(use_ipp)
    assert all(np.array_equal(ours[i], theirs[i]) for i in range(4))


def test_bicubic_close_to_cv2_inter_cubic():
    maps = smooth_maps(20, seed=3, size=(14, 14))
    ours = (normalize_maps(maps, 224, "wsoleval").numpy() * 255).astype(np.uint8).astype(int)
    theirs = []
    for m in maps.numpy():
        cam = cv2.resize(m, (224, 224), interpolation=cv2.INTER_CUBIC)
        flat = cam.min() == cam.max() or m.min() == m.max()
        cam = np.zeros_like(cam) if flat else (cam - cam.min()) / (cam - cam.min()).max()
        theirs.append((cam * 255).astype(np.uint8).astype(int))
    diff = np.abs(ours - np.stack(theirs))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-4


@pytest.mark.parametrize("backend", ["union_find", "propagate", "host"])
def test_wsoleval_boxes_are_cv2_contour_boxes(backend):
    maps = smooth_maps(60, seed=11, size=(8, 8))
    thresholds = [0.0, 0.1, 0.3, 0.5, 0.7, 0.9]
    normalized = normalize_maps(maps, 24, "wsoleval").double().numpy()
    largest = boxes_from_maps(maps, thresholds, 24, protocol="wsoleval", backend=backend)
    every, valid = boxes_from_maps(maps, thresholds, 24, mode="all", protocol="wsoleval", backend=backend)
    for i, scoremap in enumerate(normalized):
        single = official_boxes(scoremap, thresholds, multi_contour=False)
        multi = official_boxes(scoremap, thresholds, multi_contour=True)
        for j in range(len(thresholds)):
            assert largest[i, j].tolist() == single[j][0], (i, thresholds[j])
            assert sorted(every[i, j][valid[i, j]].tolist()) == sorted(multi[j]), (i, thresholds[j])
