"""Maps -> extents on every backend, and the host path's pipeline (run with CPU tensors here)."""

import weakref

import pytest
import torch

from satlib.evaluation import LocalizationEvaluator
from satlib.evaluation import extents as ex
from satlib.evaluation.components import resolve_backend
from satlib.evaluation.extents import extents_from_maps

from eval_fixtures import random_gt_boxes, smooth_maps


def test_auto_picks_the_trees_on_the_cpu_and_the_host_path_on_cuda():
    assert resolve_backend("auto", torch.device("cpu")) == "union_find"
    assert resolve_backend("auto", torch.device("cuda", 0)) == "host"  # a device object: no GPU needed
    assert resolve_backend("propagate", torch.device("cpu")) == "propagate"
    with pytest.raises(ValueError, match="unknown backend 'numba'"):
        resolve_backend("numba", torch.device("cpu"))


@pytest.mark.parametrize("protocol", ["sat", "wsoleval"])
@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_host_path_gives_the_trees_extents_in_any_chunking(protocol, chunk):
    maps = smooth_maps(20, seed=12, size=(9, 11))
    thresholds = [i / 10 for i in range(10)]
    expected = extents_from_maps(maps, (30, 36), thresholds, protocol, backend="union_find", want_all=True)
    host = extents_from_maps(maps, (30, 36), thresholds, protocol, backend="host", want_all=True, chunk=chunk)
    assert torch.equal(host[0], expected[0])
    assert sorted(host[1].tolist()) == sorted(expected[1].tolist())  # map indices offset by each chunk's start


def test_host_path_queues_the_next_chunk_before_the_trees_and_holds_two_chunks(monkeypatch):
    """Chunk i+1's levels are made before chunk i's trees start, and at most two chunks of levels
    are alive at once, however many maps: memory is set by the chunk, not by the maps."""
    log, made = [], []
    make_levels, trees = ex.checked_map_levels, ex.map_extents

    def spy_levels(maps, *args, **kwargs):
        scores, cuts = make_levels(maps, *args, **kwargs)
        made.append(weakref.ref(scores))
        log.append(("levels", len(maps)))
        return scores, cuts

    def spy_trees(values, cuts, **kwargs):
        log.append(("trees", len(values), sum(ref() is not None for ref in made)))
        return trees(values, cuts, **kwargs)

    monkeypatch.setattr(ex, "checked_map_levels", spy_levels)
    monkeypatch.setattr(ex, "map_extents", spy_trees)
    maps = smooth_maps(23, seed=13, size=(8, 8))
    ex.extents_from_maps(maps, 24, [0.2, 0.5], "wsoleval", backend="host", chunk=5)
    assert [entry[0] for entry in log] == ["levels", "levels"] + ["trees", "levels"] * 3 + ["trees", "trees"]
    assert [entry[1] for entry in log if entry[0] == "levels"] == [5, 5, 5, 5, 3]
    alive = [entry[2] for entry in log if entry[0] == "trees"]  # chunks of levels alive at each tree
    assert max(alive) == ex.HOST_BUFFERS == 2  # keeping them all would give 2, 3, 4, 5, 5


def test_evaluator_keeps_the_same_state_whatever_the_number_of_batches():
    """Between updates only per-threshold counters are kept: memory is set by the batch."""
    maps, boxes = smooth_maps(40, seed=14, size=(8, 8)), random_gt_boxes(40, seed=15, size=24)

    def state_numel(batches: int) -> int:
        evaluator = LocalizationEvaluator(thresholds=[0.1, 0.5], image_size=24, protocol="wsoleval", backend="host")
        for i in range(batches):
            evaluator.update(maps[i * 4:(i + 1) * 4], boxes[i * 4:(i + 1) * 4])
        tensors = [v for v in vars(evaluator).values() if isinstance(v, torch.Tensor)]
        return sum(t.numel() for t in tensors)

    assert state_numel(1) == state_numel(10)


@pytest.mark.gpu
@pytest.mark.parametrize("protocol", ["sat", "wsoleval"])
def test_cuda_host_path_and_propagation_give_the_cpu_trees_extents(protocol):
    """Levels made by the torch ops on the GPU (pinned copies, events) = the CPU kernels' bits."""
    maps = smooth_maps(50, seed=16, size=(14, 14))
    thresholds = [i / 20 for i in range(20)]
    cpu = extents_from_maps(maps, 224, thresholds, protocol, backend="union_find", want_all=True)
    for backend in ("auto", "host", "propagate"):
        largest, rows = extents_from_maps(maps.cuda(), 224, thresholds, protocol, backend=backend, want_all=True,
                                          chunk=16)
        assert largest.is_cuda and torch.equal(largest.cpu(), cpu[0]), backend
        assert sorted(rows.cpu().tolist()) == sorted(cpu[1].tolist()), backend
