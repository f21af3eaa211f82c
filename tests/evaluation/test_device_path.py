"""The evaluator's device path as CUDA runs it (max-pool neighbour minimum, several chunks, int64 indices
where int32 gather/scatter is missing), through LocalizationEvaluator on CPU tensors."""

import pytest
import torch

from satlib.evaluation import LocalizationEvaluator
from satlib.evaluation import components as cc

from eval_fixtures import random_gt_boxes, smooth_maps


@pytest.fixture
def cuda_like_device_path(monkeypatch):
    """What a CUDA evaluation does differently, forced on the CPU: pooling, small chunks, int64 labels."""
    calls = []
    real = cc.label_components

    def pooled(mask, connectivity=8, check_every=2, pooling=None):
        labels = real(mask, connectivity, check_every, pooling=True)
        calls.append((len(mask), connectivity, labels.dtype))
        return labels

    monkeypatch.setattr(cc, "label_components", pooled)
    monkeypatch.setattr(cc, "MAX_PIXELS_CPU", 32 * 32 * 6)  # a few planes per chunk
    monkeypatch.setitem(cc._INDEX_DTYPES, "cpu", torch.int64)  # the index_dtype fallback
    return calls


@pytest.mark.parametrize("protocol", ["sat", "wsoleval"])
def test_device_path_matches_the_cpu_path(protocol, cuda_like_device_path):
    maps = smooth_maps(20, seed=41, size=(8, 8))
    gt = random_gt_boxes(20, seed=42, size=32)
    logits = torch.randn(20, 5, generator=torch.Generator().manual_seed(3))
    labels = torch.randint(0, 5, (20,), generator=torch.Generator().manual_seed(4))
    thresholds = [0.1, 0.3, 0.5, 0.7, 0.9]
    results = {}
    for backend in ("union_find", "propagate"):
        evaluator = LocalizationEvaluator(thresholds=thresholds, image_size=32, protocol=protocol, backend=backend)
        evaluator.update(maps[:12], gt[:12], logits[:12], labels[:12])
        evaluator.update(maps[12:], gt[12:], logits[12:], labels[12:])
        results[backend] = evaluator.compute()
    assert results["propagate"] == results["union_find"]
    calls = cuda_like_device_path
    assert len(calls) >= 10 + 7  # 60 then 40 (image, threshold) planes in chunks of at most 6
    assert all(planes <= 6 for planes, _, _ in calls) and {dtype for _, _, dtype in calls} == {torch.int64}
    assert {connectivity for _, connectivity, _ in calls} == ({8} if protocol == "sat" else {4, 8})
