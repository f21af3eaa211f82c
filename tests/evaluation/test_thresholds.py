import numpy as np
import pytest
import torch

from satlib.evaluation import SAT_THRESHOLDS, WSOLEVAL_THRESHOLDS, default_thresholds, normalize_maps
from satlib.evaluation.thresholds import map_levels, threshold_levels

from eval_fixtures import smooth_maps


def test_default_thresholds_are_each_protocols_own():
    assert default_thresholds("sat") == SAT_THRESHOLDS == (0.3, 0.35, 0.4, 0.45)
    assert default_thresholds("wsoleval") == WSOLEVAL_THRESHOLDS
    assert len(WSOLEVAL_THRESHOLDS) == 100 and WSOLEVAL_THRESHOLDS[1] == pytest.approx(0.01)
    with pytest.raises(ValueError, match="unknown protocol 'voc'"):
        default_thresholds("voc")


def test_sat_foreground_is_the_float_map_above_float32_t():
    above = float(np.nextafter(np.float32(0.3), np.float32(1)))
    normalized = torch.tensor([[[0.1, 0.3, above, 0.9]]])  # float32(0.3) > 0.3 in float64, not in float32
    scores, cuts = threshold_levels(normalized, [0.3, 0.0], "sat")
    assert scores is normalized and cuts.dtype == torch.float32
    assert (scores[:, None] > cuts[..., None, None]).tolist() == [[[[False, False, True, True]],
                                                                   [[True, True, True, True]]]]


def test_wsoleval_foreground_is_the_8bit_map_above_int_t_times_peak():
    normalized = torch.tensor([[[0.0, 0.5, 0.8, 0.9]]])  # 8-bit: 0, 127, 204, 229
    scores, cuts = threshold_levels(normalized, [0.5, 0.55], "wsoleval")
    assert scores.dtype == torch.uint8 and scores.tolist() == [[[0, 127, 204, 229]]]
    assert cuts.tolist() == [[np.floor(0.5 * 229), np.floor(0.55 * 229)]]  # int(t * q.max()): 114, 125
    assert (scores[:, None] > cuts[..., None, None]).tolist() == [[[[False, True, True, True]]] * 2]


def test_threshold_levels_follow_the_maps_device():
    normalized = torch.zeros(2, 3, 3, device="meta")
    for protocol in ("sat", "wsoleval"):
        scores, cuts = threshold_levels(normalized, [0.1, 0.5], protocol)
        assert scores.device == cuts.device == normalized.device and cuts.shape == (2, 2)


@pytest.mark.parametrize("shape,size", [((14, 14), (224, 224)), ((9, 11), (30, 37)), ((8, 8), (24, 24))])
def test_cpu_levels_kernel_gives_the_torch_ops_bits(shape, size):
    """map_levels' fused numba kernels (maps on the CPU, both protocols) = normalize_maps then threshold_levels."""
    maps = smooth_maps(30, seed=4, size=shape)  # plateaus, constant and rough maps among them
    torch_ops = threshold_levels(normalize_maps(maps, size, "wsoleval"), WSOLEVAL_THRESHOLDS, "wsoleval")
    for threads in (1, 3):
        fused = map_levels(maps, size, WSOLEVAL_THRESHOLDS, "wsoleval", threads=threads)
        assert fused[0].dtype == torch.uint8
        assert torch.equal(fused[0], torch_ops[0]) and torch.equal(fused[1], torch_ops[1])
    sat = map_levels(maps, size, SAT_THRESHOLDS, "sat")
    expected = threshold_levels(normalize_maps(maps, size, "sat"), SAT_THRESHOLDS, "sat")
    assert torch.equal(sat[0], expected[0]) and torch.equal(sat[1], expected[1])


def test_cpu_evaluation_leaves_torchs_pool_asleep_and_threads_its_own_work(monkeypatch):
    """While the evaluator scores CPU maps, torch runs on one thread (no parallel op wakes its OpenMP workers,
    which would spin beside the numba threads) and the numba work is split over torch's former thread count;
    after it, torch's count is as it was."""
    from satlib.evaluation import LocalizationEvaluator, components, thresholds

    seen = []
    real = components.over_threads

    def recorded(run, count, threads=None):
        seen.append((torch.get_num_threads(), threads or components._THREADS.get()))
        return real(run, count, threads)

    monkeypatch.setattr(components, "over_threads", recorded)
    monkeypatch.setattr(thresholds, "over_threads", recorded)
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        for protocol in ("sat", "wsoleval"):
            evaluator = LocalizationEvaluator(image_size=56, protocol=protocol)
            evaluator.update(smooth_maps(6, seed=1), [torch.tensor([[4.0, 4.0, 30.0, 30.0]])] * 6)
            assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
    assert len(seen) == 4 and all(entry == (1, 3) for entry in seen), seen  # levels and trees, each protocol
