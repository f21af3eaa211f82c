import numpy as np
import pytest
import torch
from scipy import ndimage

from satlib.evaluation import components as cc
from satlib.evaluation import normalize_maps
from satlib.evaluation.components import component_extents
from satlib.evaluation.thresholds import threshold_levels

from eval_fixtures import smooth_maps


def _canonical(labels: np.ndarray) -> np.ndarray:
    """Relabel by first pixel in raster order (scipy's order), background -1."""
    out = np.full(labels.shape, -1)
    flat = labels.reshape(-1)
    for new, old in enumerate(dict.fromkeys(flat[flat > 0]).keys()):
        out.reshape(-1)[flat == old] = new
    return out


def _spiral(size: int) -> np.ndarray:
    """A one-pixel-wide spiral: the worst case for plain min-label propagation."""
    mask = np.zeros((size, size), dtype=bool)
    r, c = 0, 0
    lo_r, hi_r, lo_c, hi_c = 0, size - 1, 0, size - 1
    while lo_r <= hi_r and lo_c <= hi_c:
        for c in range(lo_c, hi_c + 1):
            mask[lo_r, c] = True
        for r in range(lo_r, hi_r + 1):
            mask[r, hi_c] = True
        for c in range(lo_c, hi_c + 1):
            mask[hi_r, c] = True
        for r in range(lo_r + 2, hi_r + 1):
            mask[r, lo_c] = True
        if lo_r + 2 <= hi_r:
            mask[lo_r + 2, lo_c + 1] = lo_c + 1 <= hi_c - 2
        lo_r, hi_r, lo_c, hi_c = lo_r + 2, hi_r - 2, lo_c + 2, hi_c - 2
    return mask


@pytest.mark.parametrize("pooling", [False, True])
@pytest.mark.parametrize("connectivity", [4, 8])
def test_label_components_matches_scipy(connectivity, pooling):
    rng = np.random.default_rng(0)
    masks = rng.random((40, 13, 11)) < rng.uniform(0.2, 0.8, (40, 1, 1))
    masks[0] = _spiral(13)[:, :11]
    labels = cc.label_components(torch.from_numpy(masks), connectivity=connectivity, pooling=pooling)
    structure = np.ones((3, 3)) if connectivity == 8 else ndimage.generate_binary_structure(2, 1)
    n = 13 * 11
    for mask, lab in zip(masks, labels):
        ours = lab[:n].numpy().reshape(13, 11)
        assert (ours[~mask] == n).all()
        # each label is the raster index of its component's first pixel
        expected = ndimage.label(mask, structure)[0]
        assert np.array_equal(_canonical(np.where(mask, ours + 1, 0)), _canonical(expected))
        firsts = ours[mask]
        assert np.array_equal(mask.reshape(-1)[firsts], np.ones_like(firsts, dtype=bool))
        assert (firsts <= np.flatnonzero(mask)).all()


def test_spiral_converges_to_one_label():
    mask = torch.from_numpy(_spiral(40))
    labels = cc.label_components(mask[None], connectivity=8)[0, :-1].reshape(40, 40)
    assert ndimage.label(mask.numpy(), np.ones((3, 3)))[1] == len(labels[mask].unique())


def test_label_sums_and_extents():
    mask = torch.zeros(1, 4, 5, dtype=torch.bool)
    mask[0, 0, 0] = mask[0, 1, 1] = True  # diagonal pair: one 8-connected component
    mask[0, 2:4, 3:5] = True
    labels = cc.label_components(mask)
    sums = cc.label_sums(labels)[0]
    extents = cc.label_extents(labels, width=5)[0]
    assert sums[0] == 2 and sums[2 * 5 + 3] == 4
    assert extents[0].tolist() == [0, 0, 1, 1]
    assert extents[2 * 5 + 3].tolist() == [2, 3, 3, 4]
    assert cc.root_mask(labels)[0].nonzero().flatten().tolist() == [0, 13]


def test_numba_tree_matches_device_on_fill_and_ties():
    rng = np.random.default_rng(3)
    values = rng.integers(0, 6, (30, 9, 12)).astype(np.float64)  # many equal values: ties
    cuts = np.tile(np.arange(-1, 6, dtype=np.float64), (30, 1))
    for fill, prefer_last in ((False, False), (True, True)):
        tree, _ = cc.map_extents(values, cuts, wsoleval=fill, want_all=False)
        for m in range(30):
            for j, cut in enumerate(cuts[m]):
                fg = values[m] > cut
                if fill:
                    fg = ndimage.binary_fill_holes(fg)
                labels, count = ndimage.label(fg, np.ones((3, 3)))
                if count == 0:
                    assert (tree[m, j] == -1).all()
                    continue
                sizes = []
                for k in range(1, count + 1):
                    part = labels == k
                    if fill:
                        f = part.astype(int)
                        windows = f[:-1, :-1] + f[1:, :-1] + f[:-1, 1:] + f[1:, 1:]
                        sizes.append((windows == 3).sum() + 2 * (windows == 4).sum())
                    else:
                        sizes.append(part.sum())
                order = range(count - 1, -1, -1) if prefer_last else range(count)
                best = max(order, key=lambda k: sizes[k]) + 1
                rows, cols = np.nonzero(labels == best)
                assert tree[m, j].tolist() == [rows.min(), cols.min(), rows.max(), cols.max()]


def test_numba_threads_give_identical_results():
    rng = np.random.default_rng(4)
    values = rng.random((7, 12, 10)).astype(np.float32)
    cuts = np.tile(np.linspace(0, 0.9, 6), (7, 1))
    for wsoleval in (False, True):
        one = cc.map_extents(values, cuts, wsoleval=wsoleval, want_all=True, threads=1)
        three = cc.map_extents(values, cuts, wsoleval=wsoleval, want_all=True, threads=3)
        assert np.array_equal(one[0], three[0])
        assert np.array_equal(one[1], three[1])


@pytest.mark.parametrize("wsoleval", [False, True])
def test_numba_tree_on_8bit_levels_equals_float_values(wsoleval):
    rng = np.random.default_rng(5)
    levels = rng.integers(0, 256, (6, 15, 13)).astype(np.uint8)
    levels[0] = 7  # a constant map
    cuts = np.floor(np.linspace(0, 0.99, 25)[None, :] * levels.reshape(6, -1).max(1)[:, None]).astype(np.float64)
    cuts[1] = np.linspace(-1.5, 300.5, 25)  # fractional cuts, and cuts outside 0..255
    as_uint8 = cc.map_extents(levels, cuts, wsoleval=wsoleval, want_all=True)
    as_float = cc.map_extents(levels.astype(np.float32), cuts, wsoleval=wsoleval, want_all=True)
    assert np.array_equal(as_uint8[0], as_float[0])
    assert np.array_equal(as_uint8[1], as_float[1])


def test_padded_grid_offsets_follow_the_documented_ring():
    from satlib.evaluation._unionfind import RING, _grid

    H, W = 5, 7
    grid = _grid(H, W)
    p = 3 * (W + 2) + 4  # an inner pixel
    rows, cols = grid.rows, grid.cols
    assert [(rows[p + o] - rows[p], cols[p + o] - cols[p]) for o in grid.offsets] == list(RING)
    assert (grid.height, grid.width) == (H, W) and (rows.min(), rows.max(), cols.max()) == (-1, H, W)


@pytest.mark.parametrize("shape", [(9, 12), (1, 7), (13, 1), (30, 30)])
def test_filled_levels_are_the_step_each_pixel_first_reaches_the_border(shape):
    """join = the first step at which a pixel is background (key <= step) 4-connected to the border."""
    from satlib.evaluation import _unionfind as uf

    rng = np.random.default_rng(6)
    H, W = shape
    T = 6
    work = uf._workspace(H, W)
    for trial in range(40):
        keys = rng.integers(0, T + 1, (H, W)) if trial % 2 else rng.integers(0, 3, (H, W)) * 3
        keys[rng.random((H, W)) < 0.1] = T  # never background
        work.below.reshape(H + 2, W + 2)[1:-1, 1:-1] = keys
        counts = np.zeros(T + 2, dtype=np.int64)
        listed = uf._filled_levels(work.below, work.join, counts, work.lakes, work.queue, work.active, H, W)
        join = work.join.reshape(H + 2, W + 2)[1:-1, 1:-1]
        expected = np.full((H, W), T)
        for step in range(T - 1, -1, -1):
            labels, _ = ndimage.label(keys <= step)  # 4-connected
            border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
            reached = np.isin(labels, border[border > 0])
            expected[reached] = step
        assert np.array_equal(join, expected), trial
        assert np.array_equal(counts[1:], np.bincount(join.reshape(-1), minlength=T + 1))
        lakes = {(p // (W + 2) - 1, p % (W + 2) - 1) for p in work.lakes[:listed]}
        assert {tuple(x) for x in np.argwhere(join > keys)} <= lakes  # every lake pixel listed


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["auto", "propagate"])
@pytest.mark.parametrize("protocol", ["sat", "wsoleval"])
def test_cuda_components_match_cpu_tree(protocol, backend):
    """Same scores in, same boxes out (the resize runs on each device; bicubic may differ by an ulp)."""
    maps = smooth_maps(30, seed=8, size=(14, 14))
    scores, cuts = threshold_levels(normalize_maps(maps, 224, protocol), [i / 10 for i in range(10)], protocol)
    cpu = component_extents(scores, cuts, protocol, "union_find", want_all=True)
    cuda = component_extents(scores.cuda(), cuts.cuda(), protocol, backend, want_all=True)
    assert torch.equal(cuda[0].cpu(), cpu[0])
    order = [torch.tensor(sorted(rows.cpu().tolist())) for rows in (cpu[1], cuda[1])]
    assert torch.equal(order[0], order[1])
    assert torch.equal(normalize_maps(maps.cuda(), 224, "sat").cpu(), normalize_maps(maps, 224, "sat"))


def test_label_tables_follow_the_masks_device():
    """Every table the device path builds from the labels lives on their device (meta: no data)."""
    meta = torch.device("meta")
    labels = torch.zeros(3, 4 * 5 + 1, dtype=torch.int64, device=meta)  # (P, n+1)
    filled = torch.zeros(3, 4, 5, dtype=torch.bool, device=meta)
    tables = [cc.root_mask(labels), cc.label_sums(labels), cc.label_extents(labels, width=5),
              cc._twice_contour_area(filled, labels), cc._label_extent(labels, labels[:, 0], width=5),
              cc._plane_masks(torch.zeros(2, 4, 5, device=meta), torch.zeros(2, 3, device=meta),
                              torch.arange(6, device=meta))]
    assert [t.device for t in tables] == [meta] * len(tables)
