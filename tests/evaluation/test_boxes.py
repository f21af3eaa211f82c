import numpy as np
import pytest
import torch

from satlib.evaluation import boxes_from_maps, normalize_maps
from satlib.evaluation.boxes import extents_to_boxes

from eval_fixtures import smooth_maps
from wsol_reference import (
    sat_all_boxes,
    sat_foreground,
    sat_largest_box,
    wsoleval_all_boxes,
    wsoleval_foreground,
    wsoleval_largest_box,
)

BACKENDS = ["union_find", "propagate", "host"]
THRESHOLDS = [0.0, 0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95, 0.99]


def _check_against_reference(maps, size, protocol, backend):
    normalized = normalize_maps(maps, size, protocol).numpy()
    largest = boxes_from_maps(maps, THRESHOLDS, size, protocol=protocol, backend=backend)
    every, valid = boxes_from_maps(maps, THRESHOLDS, size, mode="all", protocol=protocol, backend=backend)
    foreground = sat_foreground if protocol == "sat" else wsoleval_foreground
    ref_largest = sat_largest_box if protocol == "sat" else wsoleval_largest_box
    ref_all = sat_all_boxes if protocol == "sat" else wsoleval_all_boxes
    for i in range(len(maps)):
        for j, t in enumerate(THRESHOLDS):
            fg = foreground(normalized[i], t)
            assert largest[i, j].tolist() == ref_largest(fg), (protocol, backend, i, t)
            assert sorted(every[i, j][valid[i, j]].tolist()) == sorted(ref_all(fg)), (protocol, backend, i, t)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("protocol", ["sat", "wsoleval"])
def test_boxes_match_reference(protocol, backend):
    count = 30 if backend == "propagate" else 100  # label propagation on the CPU is the slow path
    _check_against_reference(smooth_maps(count, seed=5, size=(8, 8)), 24, protocol, backend)


@pytest.mark.parametrize("protocol", ["sat", "wsoleval"])
def test_boxes_match_reference_at_224(protocol):
    _check_against_reference(smooth_maps(2, seed=6, size=(14, 14)), 224, protocol, "union_find")


@pytest.mark.parametrize("protocol", ["sat", "wsoleval"])
def test_backends_agree(protocol):
    maps = smooth_maps(20, seed=7, size=(9, 11))
    thresholds = [i / 10 for i in range(10)]
    largest = [boxes_from_maps(maps, thresholds, (30, 36), protocol=protocol, backend=k) for k in BACKENDS]
    assert all(torch.equal(largest[0], b) for b in largest[1:])
    every = [boxes_from_maps(maps, thresholds, (30, 36), mode="all", protocol=protocol, backend=k) for k in BACKENDS]
    assert all(torch.equal(every[0][0], b) and torch.equal(every[0][1], v) for b, v in every[1:])


def _largest(mask: np.ndarray, protocol: str, backend: str) -> list[int]:
    """Largest box at t=0.5 of a map equal to `mask`, image size = map size."""
    return boxes_from_maps(_map_with(mask), [0.5], mask.shape[0], protocol=protocol, backend=backend)[0, 0].tolist()


def _map_with(mask: np.ndarray) -> torch.Tensor:
    """A map whose SAT foreground at t=0.5 is `mask` (no resize: image size = map size)."""
    return torch.tensor(np.where(mask, 1.0, 0.0), dtype=torch.float32)[None]


def test_sat_box_conventions_by_hand():
    mask = np.zeros((8, 8), dtype=bool)
    mask[1:3, 2:5] = True  # 6 pixels
    mask[5:8, 5:8] = True  # 9 pixels, touching the bottom-right border
    box = boxes_from_maps(_map_with(mask), [0.5], 8)[0, 0].tolist()
    assert box == [5, 5, 8, 8]  # [min_col, min_row, max_col+1, max_row+1]
    every, valid = boxes_from_maps(_map_with(mask), [0.5], 8, mode="all")
    assert sorted(every[0, 0][valid[0, 0]].tolist()) == [[2, 1, 5, 3], [5, 5, 8, 8]]
    # nothing above the threshold: the whole image
    assert boxes_from_maps(_map_with(mask), [1.0], 8)[0, 0].tolist() == [0, 0, 8, 8]


def test_sat_ties_go_to_first_in_raster_order():
    mask = np.zeros((6, 6), dtype=bool)
    mask[4, 0:2] = True  # 2 pixels, first pixel at row 4
    mask[0, 4:6] = True  # 2 pixels, first pixel at row 0
    for backend in BACKENDS:
        assert boxes_from_maps(_map_with(mask), [0.5], 6, backend=backend)[0, 0].tolist() == [4, 0, 6, 1]


def test_sat_diagonal_pixels_are_connected():
    mask = np.eye(5, dtype=bool)
    mask[0, 4] = True
    for backend in BACKENDS:
        assert boxes_from_maps(_map_with(mask), [0.5], 5, backend=backend)[0, 0].tolist() == [0, 0, 5, 5]


def test_wsoleval_box_conventions_by_hand():
    mask = np.zeros((8, 8), dtype=bool)
    mask[1:6, 1:6] = True
    mask[3, 3] = False  # a one-pixel hole
    mask[6:8, 6:8] = True  # 2x2 block touching the border, diagonal to the ring: one component
    m = _map_with(mask)
    for backend in BACKENDS:
        largest = boxes_from_maps(m, [0.5], 8, protocol="wsoleval", backend=backend)[0, 0].tolist()
        assert largest == [1, 1, 7, 7]  # max_col+1 = 8 clipped to W-1 = 7
        every, valid = boxes_from_maps(m, [0.5], 8, mode="all", protocol="wsoleval", backend=backend)
        # outer contour, and the hole's contour through the pixels around (3, 3)
        assert sorted(every[0, 0][valid[0, 0]].tolist()) == [[1, 1, 7, 7], [2, 2, 5, 5]]
        assert boxes_from_maps(m * 0, [0.5], 8, protocol="wsoleval", backend=backend)[0, 0].tolist() == [0, 0, 0, 0]


def test_wsoleval_largest_is_by_polygon_area_not_pixels():
    mask = np.zeros((9, 9), dtype=bool)
    mask[0, 0:9] = True  # a line: 9 pixels, polygon area 0
    mask[3:6, 3:6] = True  # a 3x3 block: 9 pixels, polygon area 4
    for backend in BACKENDS:
        assert _largest(mask, "wsoleval", backend) == [3, 3, 6, 6]
        assert _largest(mask, "sat", backend) == [0, 0, 9, 1]


def test_wsoleval_ties_go_to_last_in_raster_order():
    mask = np.zeros((8, 8), dtype=bool)
    mask[0:2, 0:2] = True
    mask[5:7, 5:7] = True  # same area, later first pixel: cv2 lists it first
    for backend in BACKENDS:
        assert _largest(mask, "wsoleval", backend) == [5, 5, 7, 7]


def test_wsoleval_hole_area_counts_for_the_ring():
    mask = np.zeros((12, 12), dtype=bool)
    mask[0:7, 0:7] = True
    mask[1:6, 1:6] = False  # thin ring: 24 pixels, polygon area 36 with the hole
    mask[8:12, 8:12] = True  # solid 4x4: 16 pixels, polygon area 9
    for backend in BACKENDS:
        assert _largest(mask, "wsoleval", backend) == [0, 0, 7, 7]


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_maps_rejected(bad):
    maps = torch.rand(3, 5, 5)
    maps[1, 2, 2] = bad
    with pytest.raises(ValueError, match=r"maps\[1\] contains NaN or inf"):
        boxes_from_maps(maps, [0.5], 16)


def test_bad_arguments_rejected():
    with pytest.raises(ValueError, match="shape"):
        boxes_from_maps(torch.rand(5, 5), [0.5], 16)
    with pytest.raises(ValueError, match="thresholds"):
        boxes_from_maps(torch.rand(1, 5, 5), [1.5], 16)
    with pytest.raises(ValueError, match="protocol"):
        boxes_from_maps(torch.rand(1, 5, 5), [0.5], 16, protocol="voc")
    with pytest.raises(ValueError, match="empty"):
        boxes_from_maps(torch.rand(0, 5, 5), [0.5], 16)


@pytest.mark.parametrize("protocol", ["sat", "wsoleval"])
def test_extents_to_boxes_follow_the_extents_device(protocol):
    extents = torch.zeros(2, 3, 4, dtype=torch.int64, device="meta")
    assert extents_to_boxes(extents, protocol, 16).device == extents.device


@pytest.mark.spawns
def test_import_is_light():
    import subprocess
    import sys

    code = ("import sys, satlib, satlib.evaluation; "
            "print(sorted({'numba', 'matplotlib', 'cv2', 'ipywidgets'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
