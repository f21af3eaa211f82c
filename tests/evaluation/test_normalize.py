import numpy as np
import pytest
import torch

from satlib.evaluation import normalize_maps
from satlib.evaluation.normalize import resize_bicubic, resize_bilinear

from eval_fixtures import smooth_maps


def _loop_bilinear(m: np.ndarray, H: int, W: int) -> np.ndarray:
    """cv2 INTER_LINEAR by hand: half-pixel centres, clamped taps, a + (b - a) * w, rows first."""
    def taps(n_in, n_out):
        out = []
        for d in range(n_out):
            f = np.float32((d + 0.5) * (1.0 / (n_out / n_in)) - 0.5)
            s = int(np.floor(f))
            w = np.float32(f - np.float32(s))
            if s < 0:
                s, w = 0, np.float32(0)
            if s >= n_in - 1:
                s, w = n_in - 1, np.float32(0)
            out.append((s, min(s + 1, n_in - 1), w))
        return out

    def lerp(a, b, w):
        return np.float32(np.float64(a) + np.float64(np.float32(b - a)) * np.float64(w))

    rows = np.zeros((m.shape[0], W), dtype=np.float32)
    for y in range(m.shape[0]):
        for x, (lo, hi, w) in enumerate(taps(m.shape[1], W)):
            rows[y, x] = lerp(m[y, lo], m[y, hi], w)
    out = np.zeros((H, W), dtype=np.float32)
    for y, (lo, hi, w) in enumerate(taps(m.shape[0], H)):
        for x in range(W):
            out[y, x] = lerp(rows[lo, x], rows[hi, x], w)
    return out


@pytest.mark.parametrize("shape,size", [((7, 7), (32, 32)), ((5, 9), (20, 13)), ((14, 14), (224, 224))])
def test_resize_bilinear_matches_loop(shape, size):
    m = torch.rand(2, *shape)
    ours = resize_bilinear(m, size)
    for i in range(2):
        assert np.array_equal(ours[i].numpy(), _loop_bilinear(m[i].numpy(), *size))


def test_normalize_sat_and_wsoleval_ranges():
    maps = smooth_maps(20, seed=0)
    sat = normalize_maps(maps, 32, "sat")
    wsol = normalize_maps(maps, 32, "wsoleval")
    assert sat.shape == wsol.shape == (20, 32, 32)
    assert sat.min() >= 0 and sat.max() < 1  # the +1e-5 keeps SAT maps below 1
    assert wsol.min() == 0
    constant = maps.flatten(1).std(1) == 0
    assert (wsol[constant] == 0).all() and (sat[constant] == 0).all()
    assert (wsol.flatten(1).amax(1)[~constant] == 1).all()


@pytest.mark.parametrize("resize", [resize_bilinear, resize_bicubic])
def test_resize_follows_the_maps_device(resize):
    maps = torch.zeros(3, 5, 7, device="meta")
    assert resize(maps, (11, 13)).device == maps.device
